"""Data-parallel teacher training: `teacher.train.processes: N` runs the teacher stage in N torchrun processes
(gloo on this CPU machine), for real, and from the teacher asset through Dagster Pipes."""

from dataclasses import replace

import pytest
import torch
from dagster import AssetKey, DagsterInstance

from pipelines.definitions import build_definitions
from squeezeflow.config import apply_overrides
from squeezeflow.lifecycle import Lifecycle
from squeezeflow.models import load_checkpoint
from squeezeflow.stages import teacher
from squeezeflow.training.distributed import shard
from squeezeflow.workspace import Workspace


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (11, 2), (11, 3), (2, 3)])
def test_the_shares_of_an_epoch_are_equal_disjoint_and_cover_all_but_a_remainder(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shares = [shard(order, r, world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    taken = torch.cat(shares)
    assert len(set(taken.tolist())) == len(taken) == n - n % world
    assert set(taken.tolist()) <= set(order.tolist())


@pytest.mark.slow
def test_two_processes_train_a_teacher_within_noise_of_one_and_the_same_one_each_time(workspace, tmp_path):
    Lifecycle(Workspace(workspace), push=False).run_stage("dataset", "ddp-test")

    ws = Workspace(workspace)

    def train(processes: int, name: str) -> tuple[dict, dict]:
        params = apply_overrides(ws.params(), {"teacher.train.processes": processes})
        out, measured = tmp_path / name, tmp_path / f"{name}-measured"
        out.mkdir()
        measured.mkdir()
        metrics = teacher.run(replace(ws.context("teacher", params, out), measured=measured))
        return metrics, load_checkpoint(out / "model.pt")[0].state_dict()

    one, _ = train(1, "one")
    two, weights = train(2, "two")
    assert two["epochs"] == one["epochs"] and two["parameters"] == one["parameters"]
    # digits, 360 test samples: one standard error is ~1 point; two processes see the same data in other batches
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 4.0, (one["test_accuracy"], two["test_accuracy"])
    assert two["test_accuracy"] > 80

    # the same again, started by the teacher asset through Dagster Pipes: the same teacher; rank 0 reported to it
    defs = build_definitions(workspace, {"teacher.train.processes": 2})
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("lifecycle").execute_in_process(
            instance=instance, asset_selection=[AssetKey("dataset"), AssetKey("teacher")], raise_on_error=False,
            # run config replaces the resource's configured values, its root included: name it again
            run_config={"resources": {"squeezeflow": {"config": {"root": str(workspace),
                                                                 "overrides": ["teacher.train.processes=2"]}}}})
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success, logs[-10:]
    assert any("torchrun rank 0 of 2: training" in m for m in logs), logs  # a line logged by rank 0 over Pipes
    (reported,) = [m for m in logs if "[pipes] rank 0 reported" in m]
    assert '"processes": 2' in reported and '"model.pt"' in reported
    assert f'"test_accuracy": {two["test_accuracy"]}' in reported
    weights_again = load_checkpoint(workspace / "artifacts" / "teacher" / "model.pt")[0].state_dict()
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)

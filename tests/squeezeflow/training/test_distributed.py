"""Data-parallel teacher training: `teacher.train.processes: N` runs the teacher stage in N torchrun processes
(gloo on this CPU machine), for real."""

from dataclasses import replace

import pytest
import torch

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
    again, weights_again = train(2, "two-again")
    assert two["epochs"] == one["epochs"] and two["parameters"] == one["parameters"]
    # digits, 360 test samples: one standard error is ~1 point; two processes see the same data in other batches
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 4.0, (one["test_accuracy"], two["test_accuracy"])
    assert two["test_accuracy"] > 80
    assert again["test_accuracy"] == two["test_accuracy"]
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)

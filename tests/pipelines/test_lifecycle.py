"""End to end, on real Dagster, MLflow (SQLite), DVC (local remote) and Great Expectations. Few and small."""

import json

import numpy as np
import pytest
import yaml
from dagster import DagsterInstance
from mlflow import MlflowClient

from pipelines.runner import run_lifecycle
from squeezeflow.tracking import champion
from squeezeflow.workspace import Workspace
from tests.conftest import make_workspace, write_target

pytestmark = pytest.mark.slow
TARGETS = ["cpu-fp32", "cpu-int8", "edge-fp32-2t"]


def last_summary(ws: Workspace) -> dict:
    runs = sorted((ws.state_dir / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def client(ws: Workspace) -> MlflowClient:
    uri = f"sqlite:///{ws.state_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    with pytest.MonkeyPatch.context() as mp:
        (base / "dagster_home").mkdir()
        (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        mp.setenv("DAGSTER_HOME", str(base / "dagster_home"))
        mp.setenv("DVC_SITE_CACHE_DIR", str(base / "dvc_site"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield base


@pytest.fixture(scope="module")
def first_run(env):
    root = make_workspace(env / "ws")
    # A target added by a YAML file only: it must get its own chain.
    p = write_target(root / "device_targets", "edge-fp32-2t")
    spec = yaml.safe_load(p.read_text())
    spec["measure"]["threads"] = 2
    p.write_text(yaml.safe_dump(spec))
    ws = Workspace(root)
    rc = run_lifecycle(ws, [], TARGETS)
    return ws, rc, last_summary(ws)


def test_every_target_is_validated_gated_and_promoted(first_run):
    ws, rc, summary = first_run
    assert rc == 0 and summary["success"]
    rows = {r["target"]: r for r in summary["targets"]}
    assert set(rows) == set(TARGETS)
    for row in rows.values():
        assert row["gate"] == "pass" and row["promoted"] == "yes"
        assert 0 < row["accuracy"] <= 100 and row["bytes"] > 0 and row["p50 ms"] <= row["p95 ms"]
    assert rows["cpu-int8"]["bytes"] < rows["cpu-fp32"]["bytes"]
    assert rows["edge-fp32-2t"]["model URI"] == "models:/squeezeflow-digits-edge-fp32-2t/1"


def test_checks_ran_and_passed_in_dagster(first_run):
    ws, _, summary = first_run
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["dagster_run_id"])
        assert run is not None and run.job_name == "lifecycle"
        from dagster import AssetCheckKey, AssetKey

        for key in [AssetCheckKey(AssetKey("dataset"), "data_expectations"),
                    AssetCheckKey(AssetKey("exported"), "onnx_matches_torch"),
                    AssetCheckKey(AssetKey(["edge_fp32_2t", "validated"]), "gate")]:
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
            assert record.run_id == summary["dagster_run_id"] and record.status.value == "SUCCEEDED"


def test_checkpoints_are_dvc_tracked_and_pushed(first_run):
    ws, _, _ = first_run
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    assert set(ws.stages) - {"sweep"} == set(lock)  # the sweep is its own job
    remote = ws.state_dir / "dvc-remote"
    pushed = {p.name for p in remote.rglob("*") if p.is_file()}
    for stage in ("teacher", "exported", "build-cpu-int8"):
        md5 = lock[stage]["outs"][0]["md5"]
        assert md5.removesuffix(".dir")[2:] + ".dir" in pushed


def test_promoted_model_carries_its_lineage_in_mlflow(first_run):
    ws, _, summary = first_run
    c = client(ws)
    mv = champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-int8")
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    assert mv.tags["squeezeflow.dagster_run_id"] == summary["dagster_run_id"]
    assert "mlflow.source.git.commit" in mv.tags
    for stage in ("dataset", "teacher", "compressed", "finetuned", "exported", "build-cpu-int8"):
        assert mv.tags[f"squeezeflow.dvc.{stage}"] == lock[stage]["outs"][0]["md5"]
    exp = c.get_experiment_by_name("squeezeflow")
    runs = c.search_runs([exp.experiment_id], f"tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    parent = [r for r in runs if r.data.tags["squeezeflow.stage"] == "pipeline"]
    assert len(parent) == 1 and parent[0].data.params["teacher.hidden"] == "[64]"
    children = {r.data.tags["squeezeflow.stage"] for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert {"dataset", "teacher", "compressed", "finetuned", "exported", "build-cpu-int8", "validate-cpu-int8",
            "promote-cpu-int8"} <= children
    assert {d.dataset.name for d in parent[0].inputs.dataset_inputs} == {"digits-train", "digits-val", "digits-test"}


def test_warm_rerun_reuses_everything_and_keeps_the_champion(first_run):
    ws, _, _ = first_run
    before = champion(type("T", (), {"client": client(ws)})(), "squeezeflow-digits-cpu-fp32").version
    teacher_mtime = (ws.stage_dir("teacher") / "model.pt").stat().st_mtime
    assert run_lifecycle(ws, [], TARGETS) == 0
    summary = last_summary(ws)
    c = client(ws)
    runs = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                         f"tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    reused = {r.data.tags["squeezeflow.stage"]: r.data.tags.get("squeezeflow.reused") for r in runs}
    assert all(reused[s] == "true" for s in ws.stages if s != "sweep"), reused
    assert (ws.stage_dir("teacher") / "model.pt").stat().st_mtime == teacher_mtime
    assert champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version == before


def test_a_failing_gate_leaves_the_previous_champion(first_run):
    ws, _, _ = first_run
    c = client(ws)
    before = champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version
    path = ws.targets_dir / "cpu-fp32.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["budgets"]["max_latency_p95_ms"] = 1e-6
    path.write_text(yaml.safe_dump(spec))
    # A new model (another seed) that would otherwise be promoted.
    rc = run_lifecycle(Workspace(ws.root), ["seed=1"], ["cpu-fp32"])
    assert rc == 3
    row = last_summary(ws)["targets"][0]
    assert row["gate"] == "FAIL" and row["promoted"] == "no"
    assert champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version == before
    assert len(c.search_model_versions("name = 'squeezeflow-digits-cpu-fp32'")) == int(before)


def test_a_bad_dataset_is_blocked_before_training(env):
    root = make_workspace(env / "bad")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    x[10, 3, 3] = np.nan
    npz = env / "bad.npz"
    np.savez(npz, x=x, y=d.target)
    ws = Workspace(root)
    rc = run_lifecycle(ws, ["dataset.name=npz", f"dataset.path={npz}"], ["cpu-fp32"])
    assert rc == 1
    summary = last_summary(ws)
    failure = summary["failed_checks"][0]
    assert failure["check"] == "data_expectations"
    assert any("bad.npz" in f["message"] and "field 'x' = nan" in f["message"] for f in failure["failures"])
    assert not ws.stage_dir("teacher").exists()
    assert client(ws).search_registered_models() == []


def test_pareto_sweep_logs_its_plot_to_mlflow_and_dagster(env):
    from dagster import AssetKey

    from pipelines.runner import run_sweep

    root = make_workspace(env / "sweep", targets=("cpu-fp32",))
    ws = Workspace(root)
    rc = run_sweep(ws, ["sweep.teacher_scales=[0.25,1.0]", "sweep.recipes=[tiny]"])
    assert rc == 0
    points = json.loads((ws.stage_dir("sweep") / "points.json").read_text())
    assert [(p["teacher_scale"], p["recipe"]) for p in points] == [(0.25, "teacher"), (0.25, "tiny"), (1.0, "teacher"),
                                                                   (1.0, "tiny")]
    assert any(p["on_front"] for p in points)
    c = client(ws)
    (run,) = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id], "tags.`squeezeflow.stage` = 'sweep'")
    assert {"pareto.png", "points.json"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    with DagsterInstance.get() as instance:
        mat = instance.get_latest_materialization_event(AssetKey("pareto_sweep")).asset_materialization
    assert mat.metadata["plot"].value.startswith("![Pareto front](data:image/png;base64,")


def test_the_recipe_is_a_dvc_param_and_logged_whole_to_mlflow(first_run):
    ws, _, summary = first_run
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    recorded = lock["compressed"]["params"][".squeezeflow/recipes.yaml"]
    assert recorded["main.name"] == "tiny" and recorded["main.steps"][1]["technique"] == "prune-magnitude"
    assert "main.finetune" in lock["finetuned"]["params"][".squeezeflow/recipes.yaml"]
    c = client(ws)
    (run,) = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                           f"tags.`squeezeflow.stage` = 'compressed' and tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    assert run.data.params["recipe.main.name"] == "tiny"
    local = c.download_artifacts(run.info.run_id, "recipe.yaml", str(ws.root / ".squeezeflow"))
    assert yaml.safe_load(open(local))["steps"][0]["student"]["hidden"] == [16]

import numpy as np
import torch

from squeezeflow.export import export_onnx
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.tracking import Tracker, champion, promote


def test_promote_registers_sets_champion_and_skips_an_identical_file(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "artifacts")
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    export_onnx(build_model(ModelSpec("mlp", (4,), 3, (8,))), (4,), path, 17)
    x = np.zeros((2, 4), np.float32)
    run = tracker.stage_run(tracker.parent_run("r1", {"a": 1}, {}), "r1", "promote", {}, {})
    first = promote(tracker, run, "sf-test", path, x, {"squeezeflow.dagster_run_id": "r1"})
    assert first.promoted and not first.reused and champion(tracker, "sf-test").version == first.version
    again = promote(tracker, run, "sf-test", path, x, {})
    assert again.reused and again.version == first.version
    mv = tracker.client.get_model_version("sf-test", first.version)
    assert mv.tags["squeezeflow.dagster_run_id"] == "r1"
    import mlflow.onnx

    from squeezeflow.tracking.registry import fluent_uri

    with fluent_uri(tracker.tracking_uri):
        loaded = mlflow.onnx.load_model("models:/sf-test@champion")
    assert loaded.graph.input[0].name == "input"


def test_promote_leaves_the_process_tracking_uri_alone(tmp_path, monkeypatch):
    # MLflow's fluent set_tracking_uri writes os.environ; a later workspace in this process must not inherit it
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "artifacts")
    path = tmp_path / "m.onnx"
    export_onnx(build_model(ModelSpec("mlp", (4,), 3, (8,))), (4,), path, 17)
    run = tracker.stage_run(tracker.parent_run("r1", {}, {}), "r1", "promote", {}, {})
    promote(tracker, run, "sf-env", path, np.zeros((2, 4), np.float32), {})
    assert "MLFLOW_TRACKING_URI" not in os.environ

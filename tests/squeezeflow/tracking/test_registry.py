import numpy as np
import pytest
import torch

from squeezeflow.export import export_onnx
from squeezeflow.io import sha256_file
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.tracking import champion
from squeezeflow.tracking.registry import download_onnx, register, version_with_sha
from squeezeflow.tracking.schema import SHA_TAG


def onnx_file(path, seed: int = 0):
    torch.manual_seed(seed)
    export_onnx(build_model(ModelSpec("mlp", (4,), 3, (8,))), (4,), path, 17)
    return path


def test_register_keeps_the_exact_file_and_moves_no_alias(tracker, tmp_path):
    path = onnx_file(tmp_path / "m.onnx")
    run = tracker.stage_run(tracker.parent_run("r1", {"a": 1}, {}), "r1", "gate", {}, {})
    mv = register(tracker, run, "sf-test", path, np.zeros((2, 4), np.float32), {"squeezeflow.gate": "passed"}, "hello")
    assert str(mv.version) == "1" and mv.tags[SHA_TAG] == sha256_file(path) and mv.description == "hello"
    assert champion(tracker, "sf-test") is None
    assert version_with_sha(tracker, "sf-test", sha256_file(path)).version == 1
    assert version_with_sha(tracker, "sf-test", "0" * 64) is None
    got = download_onnx(tracker, "sf-test", "1", tmp_path / "back.onnx")
    assert got.read_bytes() == path.read_bytes()  # the champion compared later is byte for byte what was gated


def test_a_tampered_stored_file_fails_the_download(tracker, tmp_path):
    path = onnx_file(tmp_path / "m.onnx")
    run = tracker.stage_run(tracker.parent_run("r1", {}, {}), "r1", "gate", {}, {})
    register(tracker, run, "sf-t", path, np.zeros((2, 4), np.float32), {})
    tracker.client.set_model_version_tag("sf-t", "1", SHA_TAG, "f" * 64)
    with pytest.raises(RuntimeError, match="does not match its recorded sha256"):
        download_onnx(tracker, "sf-t", "1", tmp_path / "back.onnx")


def test_register_leaves_the_process_tracking_uri_alone(tracker, tmp_path, monkeypatch):
    # MLflow's fluent set_tracking_uri writes os.environ; a later workspace in this process must not inherit it
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = onnx_file(tmp_path / "m.onnx")
    run = tracker.stage_run(tracker.parent_run("r1", {}, {}), "r1", "gate", {}, {})
    register(tracker, run, "sf-env", path, np.zeros((2, 4), np.float32), {})
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_the_registered_model_loads_with_the_session_it_was_validated_with(tracker, tmp_path):
    import mlflow.pyfunc
    from mlflow.models import Model

    from squeezeflow.runtimes import MeasureSpec
    from squeezeflow.runtimes.measure import mlflow_session_options
    from squeezeflow.tracking.registry import fluent_uri

    path = onnx_file(tmp_path / "m.onnx")
    run = tracker.stage_run(tracker.parent_run("r3", {"a": 1}, {}), "r3", "gate", {}, {})
    spec = MeasureSpec(threads=2, session_options={"session.intra_op.allow_spinning": "0"})
    register(tracker, run, "sf-opts", path, np.zeros((2, 4), np.float32), {},
             session_options=mlflow_session_options(spec))
    with fluent_uri(tracker.tracking_uri):
        local = mlflow.artifacts.download_artifacts("models:/sf-opts/1", dst_path=str(tmp_path / "dl"))
        flavor = Model.load(local).flavors["onnx"]
        assert flavor["onnx_session_options"] == {"intra_op_num_threads": 2, "inter_op_num_threads": 1,
                                                  "execution_mode": "sequential",
                                                  "extra_session_config": {"session.intra_op.allow_spinning": "0"}}
        assert flavor["providers"] == ["CPUExecutionProvider"]
        out = mlflow.pyfunc.load_model("models:/sf-opts/1").predict(np.ones((3, 4), np.float32))
    assert np.asarray(out["logits"] if isinstance(out, dict) else out).shape == (3, 3)


def test_a_version_without_a_recorded_sha256_is_not_compared_as_if_it_matched(tracker, tmp_path):
    path = onnx_file(tmp_path / "m.onnx")
    run = tracker.stage_run(tracker.parent_run("r1", {}, {}), "r1", "gate", {}, {})
    register(tracker, run, "sf-nosha", path, np.zeros((2, 4), np.float32), {})
    tracker.client.delete_model_version_tag("sf-nosha", "1", SHA_TAG)
    with pytest.raises(RuntimeError, match="has no recorded sha256"):
        download_onnx(tracker, "sf-nosha", "1", tmp_path / "back.onnx")


def test_the_files_an_engine_loads_beside_the_model_are_registered_and_come_back(tracker, tmp_path):
    """A TensorRT target runs model.plan, not the ONNX file: it is registered with the version and downloaded
    beside the champion's ONNX file for the comparison, checked against its sha256."""
    path = onnx_file(tmp_path / "model.onnx")
    plan = path.with_suffix(".plan")
    plan.write_bytes(b"serialized engine bytes" * 100)
    run = tracker.stage_run(tracker.parent_run("r1", {}, {}), "r1", "gate", {}, {})
    register(tracker, run, "sf-trt", path, np.zeros((2, 4), np.float32), {}, companions=[plan])
    got = download_onnx(tracker, "sf-trt", "1", tmp_path / "back" / "champion.onnx")
    assert got.with_suffix(".plan").read_bytes() == plan.read_bytes()
    import json

    tag = json.loads(tracker.client.get_model_version("sf-trt", "1").tags["squeezeflow.companions"])
    tag["model.plan"]["sha256"] = "0" * 64
    tracker.client.set_model_version_tag("sf-trt", "1", "squeezeflow.companions", json.dumps(tag))
    with pytest.raises(RuntimeError, match="its stored model.plan does not match"):
        download_onnx(tracker, "sf-trt", "1", tmp_path / "again" / "champion.onnx")


def test_after_the_fluent_api_a_client_given_a_tracking_uri_uses_it_as_its_registry_too(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from squeezeflow.tracking.registry import fluent_uri

    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(k, raising=False)
    with fluent_uri(f"sqlite:///{tmp_path / 'a.db'}"):
        pass
    other = f"sqlite:///{tmp_path / 'b.db'}"
    assert MlflowClient(tracking_uri=other)._registry_uri == other  # not the process-wide default ./mlflow.db

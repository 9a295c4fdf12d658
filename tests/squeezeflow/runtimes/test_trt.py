"""The TensorRT builder: its config, the "unavailable" path that runs here, and (marked, skipped here) the engine."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes import builder_for, parse_build_config
from squeezeflow.runtimes.engines import engine_unavailable, load_engine
from squeezeflow.runtimes.trt import TensorRtConfig, unavailable

REASON = unavailable()
needs_trt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT unavailable: {REASON}")
without_trt = pytest.mark.skipif(REASON is None, reason="TensorRT is available here")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model(ModelSpec("mlp", (12,), 3, (32,))).eval()
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    export_onnx(m, (12,), path, 17)
    x = np.random.default_rng(0).normal(size=(120, 12)).astype(np.float32)
    return path, x, onnx_logits(path, x).argmax(1)


def test_config_names_the_builder_and_its_options_on_a_wrong_one():
    with pytest.raises(SqueezeflowInputError) as err:
        parse_build_config({"builder": "tensorrt", "precision": "fp16", "symmetric_activations": True},
                           Path("device_targets/gpu.yaml"))
    msg = str(err.value)
    assert "build.symmetric_activations" in msg and "the tensorrt builder does not take this option" in msg
    assert "timing_cache" in msg
    with pytest.raises(SqueezeflowInputError, match="build.precision"):
        parse_build_config({"builder": "tensorrt", "precision": "int4"}, Path("gpu.yaml"))


@without_trt
def test_here_the_build_writes_the_typed_graph_and_says_why_there_is_no_engine(exported, tmp_path):
    path, x, y = exported
    report = builder_for(TensorRtConfig(precision="fp16")).build(path, tmp_path / "model.onnx", x, (x, y))
    assert report["engine"] is None and report["unavailable"] == REASON
    assert report["graph"]["val_accuracy_drop"] is not None and abs(report["graph"]["val_accuracy_drop"]) <= 2
    assert not (tmp_path / "model.plan").exists()
    types = {t.data_type for t in onnx.load(str(tmp_path / "model.onnx")).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types and onnx.TensorProto.FLOAT not in types  # shape constants stay int64
    assert engine_unavailable("tensorrt") == REASON and engine_unavailable("onnxruntime") is None
    assert "tensorrt" in REASON or "CUDA" in REASON


@needs_trt
@pytest.mark.tensorrt
def test_engine_builds_with_a_timing_cache_and_agrees(exported, tmp_path):  # pragma: no cover - needs a GPU
    path, x, y = exported
    cache = tmp_path / "shared.cache"
    report = builder_for(TensorRtConfig(precision="fp16", timing_cache=cache, max_batch=128)).build(
        path, tmp_path / "model.onnx", x, (x, y))
    engine = report["engine"]
    assert engine["sha256"] and (tmp_path / "model.plan").stat().st_size == engine["bytes"] and cache.is_file()
    out = load_engine("tensorrt", tmp_path / "model.onnx").predict(x, batch=64)
    assert (out.argmax(1) == y).mean() >= 0.98


def test_a_profile_measuring_beyond_the_engines_largest_batch_is_refused(tmp_path):
    import yaml

    from squeezeflow.targets import load_target

    spec = {"name": "gpu", "runtime": "tensorrt", "build": {"builder": "tensorrt", "max_batch": 64},
            "measure": {"throughput_batch": 256},
            "budgets": {"max_accuracy_drop": 1, "max_latency_p95_ms": 1, "max_model_bytes": 10**6}}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SqueezeflowInputError, match=r"field 'measure.throughput_batch' = 256: larger than the "
                                                    r"largest batch the build accepts \(build.max_batch = 64\)"):
        load_target(tmp_path / "gpu.yaml")
    spec["measure"] = {"throughput_batch": 64, "batch_sizes": [8]}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(spec))
    assert load_target(tmp_path / "gpu.yaml").build.largest_batch() == 64


def test_an_optimization_profile_must_have_opt_within_max():
    with pytest.raises(SqueezeflowInputError, match="opt_batch 64 is larger than max_batch 8"):
        parse_build_config({"builder": "tensorrt", "opt_batch": 64, "max_batch": 8}, Path("gpu.yaml"))

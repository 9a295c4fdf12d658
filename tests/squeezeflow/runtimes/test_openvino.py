"""The OpenVINO target: builder (fp32 copy or int8 QDQ), engine, and measurement through OpenVINO."""

import numpy as np
import onnx
import pytest
import torch

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes import MeasureSpec, builder_for, measure_isolated, parse_build_config
from squeezeflow.runtimes.engines import load_engine
from squeezeflow.runtimes.ov_cpu import OpenVinoConfig

FAST = dict(warmup=2, iterations=30, throughput_batch=16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    export_onnx(build_model(ModelSpec("cnn", (8, 8), 10, (8, 16))).eval(), (8, 8), path, 17)
    x = np.random.default_rng(0).random((300, 8, 8)).astype(np.float32)
    return path, x, onnx_logits(path, x).argmax(1)


def test_openvino_runs_the_fp32_model_like_onnx_runtime(exported, tmp_path):
    src, x, y = exported
    out = tmp_path / "fp32.onnx"
    info = builder_for(OpenVinoConfig(precision="fp32")).build(src, out, x)
    assert info == {"precision": "fp32"} and out.read_bytes() == src.read_bytes()
    ov_logits = load_engine("openvino", out).predict(x)
    np.testing.assert_allclose(ov_logits, onnx_logits(src, x), atol=1e-3)


def test_the_int8_build_is_qdq_and_measured_through_openvino(exported, tmp_path):
    src, x, y = exported
    out = tmp_path / "int8.onnx"
    info = builder_for(OpenVinoConfig(calibration_samples=100)).build(src, out, x[:200], (x[200:], y[200:]))
    assert info["precision"] == "int8" and info["backoff"][0] == "as configured"  # the ort-int8-qdq build, back-off too
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(out)).graph.node}
    got = measure_isolated(out, x, y, MeasureSpec(**FAST), runtime="openvino")
    assert "error" not in got, got
    assert got["runtime"] == "openvino" and got["accuracy"] > 90 and got["peak_rss_mb"] > 10


def test_a_model_openvino_cannot_compile_is_a_reason_not_a_crash(exported):
    src, x, y = exported
    got = measure_isolated(src, x, y, MeasureSpec(**FAST, session_options={"NOT_AN_OPENVINO_PROPERTY": "1"}),
                           runtime="openvino")
    assert set(got) == {"error"} and "OpenVINO cannot compile this model for CPU" in got["error"]


def test_the_openvino_builder_takes_its_own_options_only():
    cfg = parse_build_config({"builder": "openvino", "precision": "fp32"}, "t.yaml")
    assert isinstance(cfg, OpenVinoConfig) and cfg.precision == "fp32"
    with pytest.raises(ValueError, match="field 'build.optimization_level'"):
        parse_build_config({"builder": "openvino", "optimization_level": "all"}, "t.yaml")
    with pytest.raises(ValueError, match="field 'build.precision' = 'int4'"):
        parse_build_config({"builder": "openvino", "precision": "int4"}, "t.yaml")


def test_the_recorded_runtime_config_loads_the_model_as_validated(exported):
    import openvino as ov

    from squeezeflow.runtimes.engines import engine_config

    src, x, _ = exported
    config = engine_config("openvino", threads=1)
    assert config.pop("runtime") == "openvino"
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(src)), config.pop("device"), config)  # as the tag says
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    np.testing.assert_allclose(np.asarray(compiled.create_infer_request().infer([x[:4]])[0]),
                               load_engine("openvino", src, threads=1).run(x[:4]), atol=1e-5)

import numpy as np
import onnx
import pytest
import torch

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes import BUILDERS, measure
from squeezeflow.targets import BuildSpec, MeasureSpec


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model(ModelSpec("mlp", (8, 8), 10, (64,))).eval()
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    export_onnx(m, (8, 8), path, 17)
    x = np.random.default_rng(0).random((300, 8, 8)).astype(np.float32)
    return path, x


def test_fp32_build_keeps_outputs(exported, tmp_path):
    src, x = exported
    out = tmp_path / "fp32.onnx"
    BUILDERS["ort-fp32"]().build(src, out, BuildSpec(builder="ort-fp32"), x)
    np.testing.assert_allclose(onnx_logits(out, x), onnx_logits(src, x), atol=1e-5)


def test_int8_build_is_qdq_smaller_and_close(exported, tmp_path):
    src, x = exported
    out = tmp_path / "int8.onnx"
    info = BUILDERS["ort-int8-qdq"]().build(src, out, BuildSpec(builder="ort-int8-qdq", calibration_samples=100), x)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and info["calibration_samples"] == 100
    assert out.stat().st_size < src.stat().st_size / 2
    ref, got = onnx_logits(src, x), onnx_logits(out, x)
    assert (ref.argmax(1) == got.argmax(1)).mean() > 0.9


def test_measure_reports_accuracy_size_latency_throughput(exported):
    src, x = exported
    y = onnx_logits(src, x).argmax(1)
    m = measure(src, x, y, MeasureSpec(warmup=1, iterations=20, throughput_batch=16))
    assert m["accuracy"] == 100.0 and m["model_bytes"] == src.stat().st_size
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"] and m["throughput_per_s"] > 0

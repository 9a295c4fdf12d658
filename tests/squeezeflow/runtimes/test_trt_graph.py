"""The TensorRT graph transforms, run here without TensorRT: folds checked against ONNX Runtime on the original
graph, fp16 numerics through ONNX's reference evaluator, the strict type check, and the int8 QDQ rules."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.models.quant_layers import WeightQuant, quantizable, to_quant
from squeezeflow.runtimes import builder_for
from squeezeflow.runtimes.ort_int8 import OrtInt8QdqConfig
from squeezeflow.runtimes.trt import TensorRtConfig
from squeezeflow.runtimes.trt_graph import (
    check_typed,
    fold_batchnorm,
    fold_constant_dequantize,
    tensorrt_qdq_problems,
    to_fp16,
)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A CNN with batch norms (trained statistics, not the identity) and asymmetric per-channel int8 weights,
    exported as the pipeline exports a quantized student: DequantizeLinear weights, batch norms left unfolded."""
    torch.manual_seed(0)
    m = build_model(ModelSpec("cnn", (8, 8), 10, (8, 16))).train()
    x = torch.randn(256, 8, 8) * 3 + 1
    with torch.no_grad():
        for _ in range(5):
            m(x)  # moves the running mean/var away from 0/1
    for i, layer in enumerate(m):
        if quantizable(layer):
            m[i] = to_quant(layer, WeightQuant(8, True, False))
    path = tmp_path_factory.mktemp("cnn") / "m.onnx"
    export_onnx(m.eval(), (8, 8), path, 17)
    return path, (np.random.default_rng(1).normal(1, 3, (200, 8, 8))).astype(np.float32)


def _types(model: onnx.ModelProto) -> set[int]:
    return {i.data_type for i in model.graph.initializer}


def test_batchnorm_fold_keeps_the_outputs(cnn, tmp_path):
    path, x = cnn
    model = onnx.load(str(path))
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    assert fold_batchnorm(model) == 0  # the weights are DequantizeLinear outputs, not constants, yet
    assert fold_constant_dequantize(model) >= 3 and fold_batchnorm(model) >= 2
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    onnx.save(model, str(tmp_path / "folded.onnx"))
    np.testing.assert_allclose(onnx_logits(tmp_path / "folded.onnx", x), onnx_logits(path, x), rtol=1e-4, atol=1e-4)


def test_constant_dequantize_fold_gives_the_dequantized_weights():
    q = np.array([[-3, 0, 5], [7, -1, 2]], dtype=np.int8)
    scale, zero = np.array([0.5, 0.25], np.float32), np.array([1, -2], np.int8)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=0),
         helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constant_dequantize(model) == 1
    (w,) = [numpy_helper.to_array(i) for i in model.graph.initializer]
    expected = np.array([[(-3 - 1) * 0.5, (0 - 1) * 0.5, (5 - 1) * 0.5],
                         [(7 + 2) * 0.25, (-1 + 2) * 0.25, (2 + 2) * 0.25]])
    np.testing.assert_array_equal(w, expected.astype(np.float32))
    assert [n.op_type for n in model.graph.node] == ["MatMul"]


def test_fp16_graph_is_typed_half_inside_float_at_the_edges_and_close(cnn):
    path, x = cnn
    half, report = to_fp16(onnx.load(str(path)))
    assert report["folded_batchnorm"] >= 2 and report["clipped_values"] == 0
    assert _types(half) == {TensorProto.FLOAT16} | ({TensorProto.INT64} & _types(half))
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inferred = check_typed(half)
    hidden = [v for v in inferred.graph.value_info if v.type.tensor_type.elem_type in (TensorProto.FLOAT,
                                                                                       TensorProto.FLOAT16)]
    assert hidden and all(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in hidden)
    ref = onnx_logits(path, x)
    out = ReferenceEvaluator(half).run(None, {"input": x})[0]  # numpy's float16 arithmetic, no ONNX Runtime
    assert out.dtype == np.float32
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_a_graph_mixing_precisions_fails_the_typed_check():
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.ones(2, np.float16), "b")])
    with pytest.raises(ValueError, match="not a strongly typed graph"):
        check_typed(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_huge_weights_saturate_in_fp16_and_are_counted():
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.array([1e6, 2.0], np.float32), "w")])
    half, report = to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert report["clipped_values"] == 1
    assert np.isfinite(numpy_helper.to_array(half.graph.initializer[0])).all()


def test_int8_for_tensorrt_is_symmetric_with_float_biases_unlike_the_onnxruntime_build(cnn, tmp_path):
    path, x = cnn
    y = onnx_logits(path, x).argmax(1)
    ort = builder_for(OrtInt8QdqConfig(calibration_samples=64))
    ort.build(path, tmp_path / "ort.onnx", x, (x, y))
    found = tensorrt_qdq_problems(onnx.load(str(tmp_path / "ort.onnx")))
    assert any("asymmetric" in p or "uint8" in p for p in found) and any("int32" in p for p in found)
    trt = builder_for(TensorRtConfig(precision="int8", calibration_samples=64))
    report = trt.build(path, tmp_path / "trt.onnx", x, (x, y))
    graph = onnx.load(str(tmp_path / "trt.onnx"))
    assert tensorrt_qdq_problems(graph) == []
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) >= 3
    assert report["graph"]["folded_batchnorm"] >= 2
    fp32, int8 = onnx_logits(path, x), onnx_logits(tmp_path / "trt.onnx", x)
    # An untrained net's top two logits are close (median gap 0.07, logits' std 0.2), so which class wins on a near
    # tie depends on the CPU's kernels (0.87 agreement over all samples on an AVX2 EPYC, 0.9 and more elsewhere).
    # Judged where fp32 decides clearly (a gap above 0.05: 61% of the samples, 100% agreement on that EPYC), and by
    # the logits' error (~0.18 there; a wrong scale or a dropped bias is 1 or more).
    top2 = np.sort(fp32, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.05
    assert clear.mean() > 0.4 and (int8.argmax(1) == y)[clear].mean() >= 0.9
    assert np.abs(int8 - fp32).mean() / np.abs(fp32).mean() < 0.3

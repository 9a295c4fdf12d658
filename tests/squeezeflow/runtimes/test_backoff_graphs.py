"""The int8 builders' back-off on residual and attention graphs exported by dynamo (the path users' ResNets and
transformers take), not only on a flat Sequential: ONNX Runtime's QDQ build, OpenVINO's int8 and the typed graph
TensorRT would get all leave the sensitive layer in float and keep the residual adds and the attention."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.runtimes import builder_for
from squeezeflow.runtimes.ort_int8 import OrtInt8QdqConfig
from squeezeflow.runtimes.ov_cpu import OpenVinoConfig
from squeezeflow.runtimes.trt import TensorRtConfig, typed_graph
from squeezeflow.runtimes.trt_graph import tensorrt_qdq_problems


class ResidualAttention(nn.Module):
    """Labels come from two small input features; a third, ignored by the weights, spans +-1e4, so an int8 input to
    `first` rounds the small ones to zero (chance accuracy) unless `first` stays in float. Behind it, a residual
    MLP and self-attention over two tokens, both added back to their input (zero-initialised, so they are exact
    identities in float and the fp32 model is 100% right; quantized, they are real QDQ'd MatMuls and Adds)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.mlp = nn.Linear(4, 4)
        self.attn = nn.MultiheadAttention(2, 1, batch_first=True)
        self.last = nn.Linear(4, 2)
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[1.0, 1, 0], [-1, -1, 0], [1, 0, 0], [0, 1, 0]]))
            self.first.bias.zero_()
            for m in (self.mlp, self.attn.out_proj):
                m.weight.zero_()
                m.bias.zero_()
            self.last.weight.copy_(torch.tensor([[-1.0, 1, 0, 0], [1, -1, 0, 0]]))
            self.last.bias.zero_()

    def forward(self, x):
        h = torch.relu(self.first(x))
        h = h + self.mlp(h)  # residual add
        tokens = h.reshape(-1, 2, 2)
        a, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return self.last((tokens + a).reshape(-1, 4))  # residual around the attention


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = np.zeros((600, 3), np.float32)
    x[:, :2] = rng.normal(size=(600, 2)) * 0.05
    x[:, 2] = rng.uniform(-1e4, 1e4, 600)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("g") / "resattn.onnx"
    info = export_onnx(ResidualAttention().eval(), (3,), path, 17)
    assert info["exporter"] == "dynamo"
    assert (onnx_logits(path, x).argmax(1) == y).mean() == 1.0
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Add") >= 2 and "Softmax" in ops  # the residual adds and the attention are in the export
    return path, x, y


def _held_out(path, x, y) -> float:
    return float((onnx_logits(path, x[450:]).argmax(1) == y[450:]).mean())


def _check(info: dict, out, x, y) -> None:
    assert info["backoff"][0] == "as configured" and len(info["backoff"]) > 1
    assert info["within_val_budget"] and len(info["float_nodes"]) >= 1
    assert _held_out(out, x, y) >= 0.97  # on samples the back-off never saw
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("Add") >= 2 and "Softmax" in ops


def test_onnxruntime_int8_backs_off_on_a_residual_attention_graph(graph, tmp_path):
    src, x, y = graph
    naive = builder_for(OrtInt8QdqConfig(calibration_samples=64)).build(src, tmp_path / "naive.onnx", x[:300])
    assert _held_out(tmp_path / "naive.onnx", x, y) < 0.75  # what the back-off has to undo
    info = builder_for(OrtInt8QdqConfig(calibration_samples=64)).build(
        src, tmp_path / "int8.onnx", x[:300], (x[300:450], y[300:450]))
    assert naive["backoff"] == ["as configured"]
    _check(info, tmp_path / "int8.onnx", x, y)


def test_openvino_int8_backs_off_on_a_residual_attention_graph(graph, tmp_path):
    src, x, y = graph
    info = builder_for(OpenVinoConfig(precision="int8", calibration_samples=64)).build(
        src, tmp_path / "ov.onnx", x[:300], (x[300:450], y[300:450]))
    assert info["precision"] == "int8"
    _check(info, tmp_path / "ov.onnx", x, y)


def test_the_tensorrt_int8_graph_backs_off_and_stays_what_tensorrt_takes(graph, tmp_path):
    src, x, y = graph
    spec = TensorRtConfig(precision="int8", calibration_samples=64)
    info = typed_graph(src, tmp_path / "trt.onnx", spec, x[:300], (x[300:450], y[300:450]))
    _check(info, tmp_path / "trt.onnx", x, y)
    assert tensorrt_qdq_problems(onnx.load(str(tmp_path / "trt.onnx"))) == []

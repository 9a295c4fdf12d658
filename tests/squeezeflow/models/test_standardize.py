"""Input normalization inside the model: raw inputs in, in torch, in the ONNX file and in its int8 build."""

import numpy as np
import onnx
import torch

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, Standardize, build_model, describe, input_norm, rebuild, with_input_norm
from squeezeflow.runtimes import builder_for
from squeezeflow.runtimes.ort_int8 import OrtInt8QdqConfig


def raw_tabular(n=400, seed=0):
    """Features on wildly different scales (up to ~5000), one constant, labels from the scaled values."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    y = (z[:, 0] + z[:, 1] > 0).astype(np.int64)
    scales = np.array([5000.0, 0.001, 3.0, 1.0, 0.0])
    x = z * scales + np.array([2000.0, 0.0, -7.0, 0.0, 42.0])
    return x.astype(np.float32), y


def test_train_statistics_standardize_and_a_constant_feature_becomes_zero():
    x, _ = raw_tabular()
    out = Standardize.fit(x)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(out[:, :4].mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(out[:, :4].std(0), 1, atol=1e-3)
    assert np.all(out[:, 4] == 0) and np.isfinite(out).all()


def test_the_layer_survives_describe_rebuild_and_a_student_inherits_it():
    x, _ = raw_tabular()
    norm = Standardize.fit(x)
    model = with_input_norm(build_model(ModelSpec("mlp", (5,), 2, (8,))), norm)
    copy = rebuild(describe(model))
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(copy(torch.as_tensor(x)), model(torch.as_tensor(x)))
    student = with_input_norm(build_model(ModelSpec("mlp", (5,), 2, (4,))), input_norm(model))
    assert torch.equal(input_norm(student).mean, norm.mean) and input_norm(student) is not norm
    assert with_input_norm(student, norm) is student  # never twice


def test_onnx_takes_raw_inputs_and_int8_quantizes_only_after_the_normalization(tmp_path):
    x, y = raw_tabular()
    torch.manual_seed(0)
    model = with_input_norm(build_model(ModelSpec("mlp", (5,), 2, (16,))), Standardize.fit(x)).eval()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y)).backward()
        opt.step()
    model.eval()
    src = tmp_path / "m.onnx"
    export_onnx(model, (5,), src, 17)
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    assert ops[:2] == ["Sub", "Div"]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits(src, x), model(torch.as_tensor(x)).numpy(), rtol=1e-4, atol=1e-4)

    int8 = tmp_path / "int8.onnx"
    # with the validation split, as the pipeline builds: on a CPU without VNNI (this project's AVX2 CI machine) the
    # 8-bit build keeps 61.5% of the 100% accuracy, and the build backs off to 7-bit weights
    info = builder_for(OrtInt8QdqConfig()).build(src, int8, x, (x, y))
    assert info["within_val_budget"]
    graph = onnx.load(str(int8)).graph
    sub, div = (next(n for n in graph.node if n.op_type == op) for op in ("Sub", "Div"))
    quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert sub.input[0] == graph.input[0].name  # Sub and Div stay float, on the raw input...
    assert not quantized & {graph.input[0].name, sub.output[0]}  # ...which is never quantized itself
    acc_fp32 = (onnx_logits(src, x).argmax(1) == y).mean()
    acc_int8 = (onnx_logits(int8, x).argmax(1) == y).mean()
    assert acc_fp32 > 0.95 and acc_int8 >= acc_fp32 - 0.02

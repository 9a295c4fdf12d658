import numpy as np
import onnx
import pytest
import torch

from squeezeflow.export import export_onnx, onnx_logits, parity
from squeezeflow.models import ModelSpec, build_model


@pytest.mark.parametrize("shape", [(8, 8), (40,)])
def test_export_matches_torch_for_any_input_layout(tmp_path, shape):
    torch.manual_seed(0)
    m = build_model(ModelSpec("mlp", shape, 10, (32,))).eval()
    path = tmp_path / "m.onnx"
    export_onnx(m, shape, path, opset=17)
    onnx.checker.check_model(str(path))
    x = np.random.default_rng(0).normal(size=(50, *shape)).astype(np.float32)
    result = parity(m, path, x)
    assert result["max_abs_diff"] < 1e-5 and result["argmax_agreement"] == 1.0
    assert onnx_logits(path, x[:1]).shape == (1, 10)  # dynamic batch


def test_failed_export_leaves_no_file(tmp_path):
    m = build_model(ModelSpec("mlp", (4,), 2, ()))
    with pytest.raises(RuntimeError):
        export_onnx(m, (5,), tmp_path / "m.onnx", opset=17)  # wrong input shape: the export fails
    assert list(tmp_path.iterdir()) == []

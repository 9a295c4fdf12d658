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


class _DataDependent(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it; TorchScript traces one branch."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x) if float(x.abs().sum()) >= 0 else -self.fc(x)


def test_the_dynamo_exporter_falls_back_to_torchscript_with_the_reason(tmp_path):
    m = _DataDependent().eval()
    how = export_onnx(m, (6,), tmp_path / "m.onnx", opset=17)
    assert how["exporter"] == "torchscript" and how["exporter_fallback_reason"]
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    assert parity(m, tmp_path / "m.onnx", x)["max_abs_diff"] < 1e-5
    assert export_onnx(build_model(ModelSpec("mlp", (6,), 3, (8,))).eval(), (6,), tmp_path / "n.onnx", 17) == {
        "exporter": "dynamo"}


def test_a_transformer_on_token_ids_exports_with_a_dynamic_batch_through_dynamo(tmp_path):
    torch.manual_seed(0)

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 16)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, ids):
            return self.head(self.enc(self.emb(ids)).mean(1))

    m = Enc().eval()
    assert export_onnx(m, (12,), tmp_path / "t.onnx", 17, "int64")["exporter"] == "dynamo"
    x = np.random.default_rng(0).integers(0, 50, (9, 12))
    result = parity(m, tmp_path / "t.onnx", x)
    assert result["max_abs_diff"] < 1e-4 and result["argmax_agreement"] == 1.0

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from squeezeflow.errors import SqueezeflowInputError

# importing quant also registers the quantized layers, so checkpoints holding them load wherever export is used
from squeezeflow.export.quant import export_quantized, has_quantized
from squeezeflow.io import atomic_path
from squeezeflow.onnxio import INPUT, OUTPUT, missing_or_empty, one_line, onnx_logits
from squeezeflow.training import predict_logits


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int,
                input_dtype: str = "float32") -> None:
    """Export with a dynamic batch axis; the file appears only once onnx.checker accepts it. A model holding
    quantized layers is stored with integer weights (squeezeflow/export/quant.py), at the opset they need."""
    model.eval()
    example = torch.zeros((1, *input_shape), dtype=getattr(torch, input_dtype))
    with atomic_path(Path(path)) as tmp:
        if hasattr(model, "standard_bytes"):  # an ONNX teacher deployed as it is: the file itself, names aligned
            tmp.write_bytes(model.standard_bytes(INPUT, OUTPUT))
        elif has_quantized(model):
            export_quantized(model, input_shape, tmp, opset, names=(INPUT, OUTPUT), input_dtype=input_dtype)
        else:
            # The TorchScript exporter: deterministic, no onnxscript round trip, and a few hundred ms for these models.
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset,
                              dynamo=False)
        onnx.checker.check_model(str(tmp), full_check=True)


def check_onnx_file(path: Path) -> None:
    """An ONNX file a stage reads, checked before use: a missing, corrupt or empty file is bad input naming the file
    (SqueezeflowInputError), not a protobuf or ONNX Runtime error from deep inside a builder."""
    path = Path(path)
    missing_or_empty(path)
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, ...: all mean "not a model"
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a valid ONNX model ({one_line(exc)})") from None


def parity(model: nn.Module, path: Path, x: np.ndarray) -> dict[str, float]:
    """How far ONNX Runtime's outputs are from torch's on the same inputs: the file's own arithmetic. Without its
    QDQ fusion: on integer weights before a MatMul, ONNX Runtime would otherwise quantize the activations on the fly
    (a runtime's speed choice, measured per target by validation, not an export error)."""
    ref, got = predict_logits(model, x), onnx_logits(path, x, options={"session.disable_quant_qdq": "1"})
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

# importing quant also registers the quantized layers, so checkpoints holding them load wherever export is used
from squeezeflow.export.quant import export_quantized, has_quantized
from squeezeflow.io import atomic_path
from squeezeflow.training import predict_logits

INPUT, OUTPUT = "input", "logits"


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int) -> None:
    """Export with a dynamic batch axis; the file appears only once onnx.checker accepts it. A model holding
    quantized layers is stored with integer weights (squeezeflow/export/quant.py), at the opset they need."""
    model.eval()
    example = torch.zeros((1, *input_shape), dtype=torch.float32)
    with atomic_path(Path(path)) as tmp:
        if has_quantized(model):
            export_quantized(model, input_shape, tmp, opset, names=(INPUT, OUTPUT))
        else:
            # The TorchScript exporter: deterministic, no onnxscript round trip, and a few hundred ms for these models.
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset,
                              dynamo=False)
        onnx.checker.check_model(str(tmp), full_check=True)


def session(path: Path, threads: int = 1, options: dict[str, str] | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for key, value in (options or {}).items():
        opts.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_logits(path: Path, x: np.ndarray, batch: int = 1024, threads: int = 1) -> np.ndarray:
    sess = session(path, threads)
    x = x.astype(np.float32)
    return np.concatenate([sess.run([OUTPUT], {INPUT: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def parity(model: nn.Module, path: Path, x: np.ndarray) -> dict[str, float]:
    """How far ONNX Runtime's outputs are from torch's on the same inputs."""
    ref, got = predict_logits(model, x), onnx_logits(path, x)
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }

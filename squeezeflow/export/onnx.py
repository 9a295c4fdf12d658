from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from squeezeflow.errors import SqueezeflowInputError

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


def _one_line(exc: BaseException) -> str:
    line = " ".join(str(exc).split()) or type(exc).__name__
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from <path> failed:Protobuf parsing failed."
    ort = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : Load model from .*? failed:\s*(.*)", line)
    if ort:
        line = f"{ort[1]}: {ort[2]}"
    return line if len(line) <= 160 else line[:157] + "..."


def _missing_or_empty(path: Path) -> None:
    if not path.is_file():
        raise SqueezeflowInputError(path, "<file>", str(path), "no such ONNX model file (run the stage that writes it)")
    if path.stat().st_size == 0:
        raise SqueezeflowInputError(path, "<file>", str(path), "an empty file, not an ONNX model")


def check_onnx_file(path: Path) -> None:
    """An ONNX file a stage reads, checked before use: a missing, corrupt or empty file is bad input naming the file
    (SqueezeflowInputError), not a protobuf or ONNX Runtime error from deep inside a builder."""
    path = Path(path)
    _missing_or_empty(path)
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, ...: all mean "not a model"
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a valid ONNX model ({_one_line(exc)})") from None


def session(path: Path, threads: int = 1, options: dict[str, str] | None = None):
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for key, value in (options or {}).items():
        opts.add_session_config_entry(key, value)
    _missing_or_empty(Path(path))
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NoModel,
            ort_errors.Fail) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), "not a model ONNX Runtime can load "
                                    f"({_one_line(exc)})") from None


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

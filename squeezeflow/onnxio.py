"""Running an ONNX file with ONNX Runtime, torch-free: what measurement processes and device agents import."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import predict_batches

INPUT, OUTPUT = "input", "logits"


def one_line(exc: BaseException) -> str:
    line = " ".join(str(exc).split()) or type(exc).__name__
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from <path> failed:Protobuf parsing failed."
    ort = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : Load model from .*? failed:\s*(.*)", line)
    if ort:
        line = f"{ort[1]}: {ort[2]}"
    return line if len(line) <= 160 else line[:157] + "..."


def missing_or_empty(path: Path) -> None:
    if not path.is_file():
        raise SqueezeflowInputError(path, "<file>", str(path), "no such ONNX model file (run the stage that writes it)")
    if path.stat().st_size == 0:
        raise SqueezeflowInputError(path, "<file>", str(path), "an empty file, not an ONNX model")


def session(path: Path, threads: int = 1, options: dict[str, str] | None = None):
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for key, value in (options or {}).items():
        opts.add_session_config_entry(key, value)
    missing_or_empty(Path(path))
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NoModel,
            ort_errors.Fail) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), "not a model ONNX Runtime can load "
                                    f"({one_line(exc)})") from None


def onnx_logits(path: Path, x: np.ndarray, batch: int = 1024, threads: int = 1,
                options: dict[str, str] | None = None) -> np.ndarray:
    sess = session(path, threads, options)
    return predict_batches(lambda b: sess.run([OUTPUT], {INPUT: b})[0], x, batch)

"""ONNX Runtime, static int8 in QDQ form: calibrated on training samples, checked on the validation split (a builder of
the onnxruntime runtime, squeezeflow/runtimes/ort.py; the openvino and tensorrt builders quantize with it too)."""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from squeezeflow.io import atomic_path, input_array
from squeezeflow.onnxio import INPUT
from squeezeflow.runtimes.base import Builder, BuilderConfig, Validation


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over an array of training samples."""

    def __init__(self, x: np.ndarray):
        self._x, self._i = x, 0  # an array or rows on disk: one sample read at a time

    def get_next(self):
        if self._i >= len(self._x):
            return None
        self._i += 1
        return {INPUT: input_array(self._x[self._i - 1 : self._i])}

    def rewind(self):  # not needed for one pass
        pass


def _integer_weights(path: Path) -> int:
    """How many weights an already quantized export stores as integers (DequantizeLinear on an int8/int4/int2
    initializer; int32 ones are biases)."""
    import onnx

    graph = onnx.load(str(path)).graph
    types = {i.name: i.data_type for i in graph.initializer}
    int32 = onnx.TensorProto.INT32  # also stands for "not an initializer"
    return sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and types.get(n.input[0], int32) != int32)


def _widen_int2(path: Path) -> None:
    """int2 weights -> int4 containers: ONNX Runtime cannot load int2 weights once activations are quantized
    (see squeezeflow/export/quant.py)."""
    import onnx

    from squeezeflow.export.quant import widen_int2

    proto = onnx.load(str(path))
    if widen_int2(proto):
        onnx.save(proto, str(path))


class OrtInt8QdqConfig(BuilderConfig):
    builder: Literal["ort-int8-qdq"] = "ort-int8-qdq"
    per_channel: bool = True
    symmetric_activations: bool = False
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(256, ge=1, le=100_000)
    reduce_range: bool = Field(False, description="7-bit weights: no int16 saturation in ONNX Runtime's uint8 x "
                               "int8 kernels on x86 CPUs without VNNI (AVX2; AVX-512 before VNNI), at a little "
                               "precision; the build backs off to it by itself when the validation split shows a loss")
    quantize_bias: bool = Field(True, description="int32 biases (ONNX Runtime's kernels); false keeps them float, "
                                "as TensorRT's explicit quantization wants")
    max_val_accuracy_drop: float = Field(0.5, ge=0, le=100, description="points of validation accuracy the "
                                         "quantized build may lose against the fp32 export before it backs off "
                                         "(per-channel, more calibration samples, sensitive layers left in float)")


class OrtInt8Qdq(Builder):
    """Static int8 quantization in QDQ form, calibrated on training samples. Weights the export already stores as
    integers (a quantize/qat/mixed-precision recipe) are kept as they are: ONNX Runtime's quantizer recognises
    DequantizeLinear weights and adds only the activation (and int32 bias) quantization."""

    name, Config, produces = "ort-int8-qdq", OrtInt8QdqConfig, "onnx"  # standard QuantizeLinear/DequantizeLinear

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        """Quantize as configured; if that loses more than `max_val_accuracy_drop` points of validation accuracy
        against the fp32 export, back off step by step and ship the first attempt within it (or, failing all,
        the most accurate one: the gate then judges it)."""
        from squeezeflow.export.onnx import check_onnx_file

        spec = self.config
        check_onnx_file(source)
        with tempfile.TemporaryDirectory() as tmpdir:
            prepped = Path(tmpdir) / "prepped.onnx"
            _prepare(source, prepped)
            reference = _val_accuracy(source, validation)
            tried = []
            for i, (label, attempt) in enumerate(_backoff(spec, prepped, len(calibration))):
                out = Path(tmpdir) / f"attempt{i}.onnx"
                _quantize(prepped, out, attempt, calibration, spec)
                drop = reference - _val_accuracy(out, validation)
                tried.append({"label": label, "settings": attempt, "drop": drop, "path": out})
                if drop <= spec.max_val_accuracy_drop:
                    break
            best = min(tried, key=lambda t: t["drop"])  # the first attempt within budget, or the least lossy one
            with atomic_path(dest) as tmp:
                tmp.write_bytes(best["path"].read_bytes())
        chosen = best["settings"]
        return {"calibration_samples": int(min(len(calibration), chosen["calibration_samples"])),
                "per_channel": chosen["per_channel"], "reduce_range": chosen["reduce_range"],
                "calibration_method": spec.calibration_method,
                "prequantized_weights": _integer_weights(source), "float_nodes": chosen["nodes_to_exclude"],
                "val_accuracy_drop": round(best["drop"], 4), "backoff": [t["label"] for t in tried],
                "within_val_budget": best["drop"] <= spec.max_val_accuracy_drop}


def _prepare(source: Path, prepped: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(prepped), skip_symbolic_shape=True)
    _widen_int2(prepped)


def _backoff(spec: OrtInt8QdqConfig, prepped: Path, available: int):
    """(label, settings) from the configured build to the most conservative, each step keeping the last: 7-bit
    weights (x86 CPUs without VNNI saturate the int16 sums of uint8 x int8 products: a small MLP on this project's
    AVX2 machine kept 61.5% of its 100% accuracy with 8-bit weights, all of it with 7), per-channel weights and every
    training sample up to 2048 for calibration, then the first, then also the last compute layer left in float (the
    input and classifier layers are the usual sensitive ones)."""
    import onnx

    compute = [n.name for n in onnx.load(str(prepped)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    base = {"per_channel": spec.per_channel, "calibration_samples": spec.calibration_samples, "nodes_to_exclude": [],
            "reduce_range": spec.reduce_range}
    yield "as configured", base
    if not base["reduce_range"]:
        base = dict(base, reduce_range=True)
        yield "7-bit weights", base
    more = dict(base, per_channel=True, calibration_samples=max(spec.calibration_samples, min(available, 2048)))
    if more != base:
        yield "per-channel, more calibration samples", more
    kept: list[str] = []
    for node in dict.fromkeys(compute[:1] + compute[-1:]):  # first, then last (once if they are the same)
        kept = kept + [node]
        yield f"{', '.join(kept)} left in float", dict(more, nodes_to_exclude=kept)


def _quantize(prepped: Path, out: Path, attempt: dict, calibration: np.ndarray, spec: OrtInt8QdqConfig) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with _quiet_axis_warnings():
        quantize_static(str(prepped), str(out), _Calibration(calibration[: attempt["calibration_samples"]]),
                        quant_format=QuantFormat.QDQ, per_channel=attempt["per_channel"],
                        activation_type=QuantType.QInt8 if spec.symmetric_activations else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=methods[spec.calibration_method],
                        nodes_to_exclude=list(attempt["nodes_to_exclude"]), reduce_range=attempt["reduce_range"],
                        extra_options={"ActivationSymmetric": spec.symmetric_activations,
                                       "QuantizeBias": spec.quantize_bias})


def _val_accuracy(path: Path, validation: Validation | None) -> float:
    if validation is None:
        return 0.0
    from squeezeflow.onnxio import onnx_logits

    x, y = validation
    return float((onnx_logits(path, x).argmax(1) == y).mean() * 100.0)


@contextmanager
def _quiet_axis_warnings():
    """ORT's per-channel pass warns on the root logger for every 1-D weight (a per-tensor scale is then used, as
    intended): noise on the terminal of every int8 build."""
    def keep(record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)

"""Builders turn the exported ONNX model into a target's deployable file. Add one by registering a class."""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np

from squeezeflow.export.onnx import INPUT, check_onnx_file
from squeezeflow.io import atomic_path
from squeezeflow.targets import BuildSpec

BUILDERS: dict[str, type["Builder"]] = {}


def register_builder(cls: type["Builder"]) -> type["Builder"]:
    BUILDERS[cls.name] = cls
    return cls


class Builder:
    name: ClassVar[str]

    def build(self, source: Path, dest: Path, spec: BuildSpec, calibration: np.ndarray) -> dict:
        raise NotImplementedError


_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@register_builder
class OrtFp32(Builder):
    """ONNX Runtime graph optimisations applied once, offline, and saved: sessions load the optimised graph."""

    name = "ort-fp32"

    def build(self, source: Path, dest: Path, spec: BuildSpec, calibration: np.ndarray) -> dict:
        import onnxruntime as ort

        check_onnx_file(source)
        with atomic_path(dest) as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[spec.optimization_level])
            opts.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
        return {"optimization_level": spec.optimization_level}


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over an array of training samples."""

    def __init__(self, x: np.ndarray):
        self._rows = iter(x.astype(np.float32)[:, None])

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {INPUT: row}

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


@register_builder
class OrtInt8Qdq(Builder):
    """Static int8 quantization in QDQ form, calibrated on training samples. Weights the export already stores as
    integers (a quantize/qat/mixed-precision recipe) are kept as they are: ONNX Runtime's quantizer recognises
    DequantizeLinear weights and adds only the activation (and int32 bias) quantization."""

    name = "ort-int8-qdq"

    def build(self, source: Path, dest: Path, spec: BuildSpec, calibration: np.ndarray) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        check_onnx_file(source)
        samples = calibration[: spec.calibration_samples]
        with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dest) as tmp:
            prepped = Path(tmpdir) / "prepped.onnx"
            quant_pre_process(str(source), str(prepped), skip_symbolic_shape=True)
            _widen_int2(prepped)
            with _quiet_axis_warnings():
                quantize_static(str(prepped), str(tmp), _Calibration(samples), quant_format=QuantFormat.QDQ,
                                per_channel=spec.per_channel,
                                activation_type=QuantType.QInt8 if spec.symmetric_activations else QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=methods[spec.calibration_method],
                                extra_options={"ActivationSymmetric": spec.symmetric_activations})
        return {"calibration_samples": int(len(samples)), "per_channel": spec.per_channel,
                "calibration_method": spec.calibration_method, "prequantized_weights": _integer_weights(source)}


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

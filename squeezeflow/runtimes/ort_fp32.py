"""ONNX Runtime, fp32: graph optimisations applied once, offline, and saved (a builder of the onnxruntime runtime,
squeezeflow/runtimes/ort.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from squeezeflow.io import atomic_path
from squeezeflow.runtimes.base import Builder, BuilderConfig, Validation

_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtFp32Config(BuilderConfig):
    builder: Literal["ort-fp32"] = "ort-fp32"
    optimization_level: Literal["basic", "extended", "all"] = "extended"


class OrtFp32(Builder):
    """Sessions load the optimised graph instead of optimising at every start. Above level `basic` it holds ONNX
    Runtime's own fused operators (com.microsoft domain; at `all`, layouts for this CPU): only ONNX Runtime runs it."""

    name, Config, produces = "ort-fp32", OrtFp32Config, "onnx-ort"

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        import onnxruntime as ort

        from squeezeflow.export.onnx import check_onnx_file

        check_onnx_file(source)
        level = self.config.optimization_level
        with atomic_path(dest) as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
            opts.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
        return {"optimization_level": level}

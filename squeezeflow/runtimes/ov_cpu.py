"""OpenVINO on CPU: the ONNX file is what OpenVINO reads and compiles at load, fp32 as exported or int8 from QDQ
nodes (the same static quantization as ort-int8-qdq, with its validation back-off). The target's profile says
`runtime: openvino`, so validation and the champion comparison run it through OpenVINO. A CPU plugin that refuses
the int8 graph (no VNNI: "No suitable implementations") fails that target's gate with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import numpy as np

from squeezeflow.export.onnx import check_onnx_file
from squeezeflow.io import atomic_path
from squeezeflow.runtimes.base import Builder, Validation, register_builder
from squeezeflow.runtimes.ort_int8 import OrtInt8Qdq, OrtInt8QdqConfig


class OpenVinoConfig(OrtInt8QdqConfig):
    builder: Literal["openvino"] = "openvino"  # type: ignore[assignment]
    precision: Literal["fp32", "int8"] = "int8"


@register_builder
class OpenVinoCpu(Builder):
    name, Config = "openvino", OpenVinoConfig

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        cfg: OpenVinoConfig = self.config
        if cfg.precision == "int8":
            qdq = OrtInt8QdqConfig(**cfg.model_dump(exclude={"builder", "precision"}))
            return {"precision": "int8", **OrtInt8Qdq(qdq).build(source, dest, calibration, validation)}
        check_onnx_file(source)
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        return {"precision": "fp32"}

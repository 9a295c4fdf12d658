"""OpenVINO on CPU: the runtime plugin and its builder. OpenVINO reads the ONNX file and compiles it at load, fp32 as
exported or int8 from QDQ nodes (the `openvino` builder: the same static quantization as ort-int8-qdq, with its
validation back-off). It runs standard ONNX files only (`ort-int8-qdq`'s too, not ONNX Runtime's optimised graphs).
A target saying `runtime: openvino` is validated and compared with its champion through OpenVINO. A CPU plugin that
refuses the int8 graph (no VNNI: "No suitable implementations") fails that target's gate with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import numpy as np

from squeezeflow.io import atomic_path
from squeezeflow.runtimes.base import Builder, Runtime, Validation, register_runtime
from squeezeflow.runtimes.ort_int8 import OrtInt8Qdq, OrtInt8QdqConfig


class OpenVinoConfig(OrtInt8QdqConfig):
    builder: Literal["openvino"] = "openvino"  # type: ignore[assignment]
    precision: Literal["fp32", "int8"] = "int8"


class OpenVinoCpu(Builder):
    name, Config, produces = "openvino", OpenVinoConfig, "onnx"

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        from squeezeflow.export.onnx import check_onnx_file

        cfg: OpenVinoConfig = self.config
        if cfg.precision == "int8":
            qdq = OrtInt8QdqConfig(**cfg.model_dump(exclude={"builder", "precision"}))
            return {"precision": "int8", **OrtInt8Qdq(qdq).build(source, dest, calibration, validation)}
        check_onnx_file(source)
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        return {"precision": "fp32"}


@register_runtime
class OpenVinoRuntime(Runtime):
    """OpenVINO's CPU plugin reading the ONNX file (fp32, or int8 from its QDQ nodes), compiled for latency with
    `threads` inference threads and one stream; `options` are extra OpenVINO properties."""

    name = "openvino"
    runs = frozenset({"onnx"})
    builders = (OpenVinoCpu,)
    safe_options = frozenset({"PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                              "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE",
                              "EXECUTION_MODE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS"})

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        import openvino as ov

        from squeezeflow.onnxio import missing_or_empty

        missing_or_empty(Path(path))
        config = self.config(threads, options)
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(path)), config.pop("device"), config)
        except RuntimeError as exc:  # e.g. "No suitable implementations" for int8 on a CPU without VNNI
            raise RuntimeError(f"OpenVINO cannot compile this model for CPU: {' '.join(str(exc).split())[:300]}") \
                from None
        self._request = self._compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._request.infer([x])[0])

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        """openvino.Core().compile_model(model, config.pop("device"), config) loads it as validated."""
        return {"device": "CPU", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                **(options or {})}

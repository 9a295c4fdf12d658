"""ONNX Runtime on CPU: the runtime plugin. It runs standard ONNX files (the exported model, static int8 QDQ graphs)
and its own optimised graphs; its builders are `ort-fp32` (the graph optimised offline, squeezeflow/runtimes/
ort_fp32.py) and `ort-int8-qdq` (static int8 in QDQ form, squeezeflow/runtimes/ort_int8.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezeflow.runtimes.base import Runtime, register_runtime
from squeezeflow.runtimes.ort_fp32 import OrtFp32
from squeezeflow.runtimes.ort_int8 import OrtInt8Qdq


@register_runtime
class OnnxRuntime(Runtime):
    """ONNX Runtime's CPU provider; `options` are session config entries."""

    name = "onnxruntime"
    runs = frozenset({"onnx", "onnx-ort"})
    builders = (OrtFp32, OrtInt8Qdq)
    safe_options = frozenset({"session.disable_quant_qdq", "session.disable_prepacking", "session.set_denormal_as_zero",
                              "session.intra_op.allow_spinning", "session.inter_op.allow_spinning",
                              "session.enable_quant_qdq_cleanup", "session.disable_double_qdq_remover",
                              "session.qdqisint8allowed", "session.x64quantprecision",
                              "session.disable_aot_function_inlining", "session.dynamic_block_base"})

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        from squeezeflow.onnxio import OUTPUT, session

        self._sess, self._out = session(path, threads, options), [OUTPUT]
        self._input = self._sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(self._out, {self._input: x})[0]

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        """The session squeezeflow.onnxio.session builds (also in the MLflow model's onnx_session_options)."""
        return {"providers": ["CPUExecutionProvider"], "threads": threads, "inter_op_threads": 1,
                "execution_mode": "sequential", "session_config_entries": dict(options or {})}

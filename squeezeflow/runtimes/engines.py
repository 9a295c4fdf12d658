"""Inference engines: how a built model file is run on the target, one registered class per runtime.

Measurement, the champion comparison and the measuring process run a target's model through the engine its
profile names (`runtime:`), so a target is validated by the runtime it deploys with. Each engine imports its
library only when a model is loaded: the measuring process stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from squeezeflow.io import input_batches

ENGINES: dict[str, type[Engine]] = {}


class Engine:
    """A loaded model: `run(x)` returns the logits for a batch of float32 inputs."""

    name: ClassVar[str]
    # The options a device agent accepts from a client (others are refused): ones that only tune how the model
    # runs. An option that names a path (a cache or dump folder) would let a client write outside the agent's folder.
    safe_options: ClassVar[frozenset[str]] = frozenset()
    # Files the engine loads beside the model file (suffixes): registered with the version, downloaded with it for
    # the champion comparison, and sent to a device agent with it.
    companions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this runtime cannot run here (a missing library or device), or None."""
        return None

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        """How this engine loads a model for a target: recorded with the registered version, so a user can load
        it the way it was validated."""
        return {"threads": threads, **(options or {})}

    def predict(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        return np.concatenate([self.run(b) for b in input_batches(x, batch)])


def register_engine(cls: type[Engine]) -> type[Engine]:
    ENGINES[cls.name] = cls
    return cls


def engine_unavailable(runtime: str) -> str | None:
    return ENGINES[runtime].unavailable() if runtime in ENGINES else f"unknown runtime '{runtime}'"


def engine_config(runtime: str, threads: int = 1, options: dict[str, str] | None = None) -> dict:
    return {"runtime": runtime, **ENGINES[runtime].config(threads, options)}


def companion_files(runtime: str, model: Path) -> list[Path]:
    """The files beside `model` that the runtime's engine loads (those that exist)."""
    suffixes = ENGINES[runtime].companions if runtime in ENGINES else ()
    return [p for p in (Path(model).with_suffix(s) for s in suffixes) if p.is_file()]


def load_engine(runtime: str, path: Path, threads: int = 1, options: dict[str, str] | None = None) -> Engine:
    if runtime not in ENGINES:
        raise KeyError(f"unknown runtime '{runtime}'; known: {sorted(ENGINES)}")
    return ENGINES[runtime](Path(path), threads, options)


@register_engine
class OnnxRuntime(Engine):
    """ONNX Runtime's CPU provider; `options` are session config entries."""

    name = "onnxruntime"
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


@register_engine
class OpenVino(Engine):
    """OpenVINO's CPU plugin reading the ONNX file (fp32, or int8 from its QDQ nodes), compiled for latency with
    `threads` inference threads and one stream; `options` are extra OpenVINO properties."""

    name = "openvino"
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


@register_engine
class TensorRt(Engine):  # pragma: no cover - needs TensorRT and a CUDA GPU
    """A TensorRT engine (`model.plan` beside the typed `model.onnx` the build wrote) on GPU 0; inputs are copied to
    the GPU and the logits back, so latency is what a caller on the host sees."""

    name = "tensorrt"
    companions = (".plan",)  # the serialized engine the build wrote beside the typed model.onnx

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        import tensorrt as trt
        import torch

        from squeezeflow.runtimes.trt import ENGINE_SUFFIX

        plan = Path(path).with_suffix(ENGINE_SUFFIX)
        if not plan.is_file():
            raise RuntimeError(f"no TensorRT engine {plan}: the build ran where TensorRT was unavailable (rebuild "
                               "this target's build stage on the device)")
        self._torch = torch
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"TensorRT cannot load {plan} (built by another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._input, self._output = inputs[0], next(n for n in names if n not in inputs)
        self._max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])  # (min, opt, max)
        self._stream = torch.cuda.Stream()

    def predict(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        return super().predict(x, min(batch, self._max_batch))  # the engine takes at most its profile's max batch

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda(non_blocking=True)
            if not self._context.set_input_shape(self._input, tuple(inp.shape)):
                raise RuntimeError(f"TensorRT refused input shape {tuple(inp.shape)} (outside the engine's profile?)")
            out = torch.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=torch.float32,
                              device="cuda")
            self._context.set_tensor_address(self._input, inp.data_ptr())
            self._context.set_tensor_address(self._output, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT could not run the engine (execute_async_v3 failed)")
            self._stream.synchronize()
            return out.cpu().numpy()

    @classmethod
    def unavailable(cls) -> str | None:
        from squeezeflow.runtimes.trt import unavailable

        return unavailable()

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        return {"device": "cuda:0", "engine": "model.plan (beside the typed model.onnx)", "threads": threads}

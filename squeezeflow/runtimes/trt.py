"""TensorRT (11; 10.x also takes strongly typed networks) on an NVIDIA GPU: the runtime plugin and its builder.

The build writes two files: `model.onnx`, the strongly typed graph the engine is built from (precision set in the
graph: fp16 casts, or explicit symmetric int8 QDQ; squeezeflow/runtimes/trt_graph.py), and `model.plan`, the
serialized engine, built with a timing cache. Where TensorRT or a CUDA GPU is missing, the typed graph is still
written and checked (on the CPU, through ONNX Runtime, against the validation split) and the report says
"unavailable: <reason>": validation then fails the target's gate with that reason, and the other targets go on.
The runtime runs that pair only (format "tensorrt-plan"), never a plain ONNX file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from squeezeflow.io import atomic_path, sha256_file
from squeezeflow.runtimes.base import Builder, BuilderConfig, Runtime, Validation, register_runtime
from squeezeflow.runtimes.ort_int8 import OrtInt8Qdq, OrtInt8QdqConfig

ENGINE_SUFFIX = ".plan"
MIN_MAJOR = 10  # strongly typed networks: TensorRT 10 (a flag) and 11 (always)


class TensorRtConfig(BuilderConfig):
    builder: Literal["tensorrt"] = "tensorrt"
    precision: Literal["fp16", "int8"] = "fp16"
    workspace_mb: int = Field(1024, ge=16, le=1_048_576, description="builder workspace memory pool")
    optimization_level: int = Field(3, ge=0, le=5, description="TensorRT builder optimization level")
    opt_batch: int = Field(1, ge=1, description="the batch size the engine is tuned for")
    max_batch: int = Field(256, ge=1, description="the largest batch the engine accepts")
    timing_cache: Path | None = Field(None, description="a timing cache file shared by builds on this GPU (read "
                                      "if present, updated after the build); the build's own copy is always kept")
    # int8 only: explicit QDQ from static calibration, symmetric, float biases (what TensorRT takes).
    per_channel: bool = True
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(256, ge=1, le=100_000)
    max_val_accuracy_drop: float = Field(0.5, ge=0, le=100, description="points of validation accuracy the typed "
                                         "graph may lose against the fp32 export (int8: before it backs off)")

    def largest_batch(self) -> int | None:
        return self.max_batch

    @model_validator(mode="after")
    def _opt_within_max(self):
        if self.opt_batch > self.max_batch:  # an optimization profile needs min <= opt <= max
            raise ValueError(f"opt_batch {self.opt_batch} is larger than max_batch {self.max_batch}")
        return self


def unavailable() -> str | None:
    """Why TensorRT cannot build or run engines here, or None when it can."""
    try:
        import tensorrt as trt
    except ImportError:
        return ("the 'tensorrt' Python package is not installed (TensorRT 11 comes from NVIDIA's package index and "
                "needs a CUDA GPU)")
    try:
        major = int(trt.__version__.split(".")[0])
    except (AttributeError, ValueError):
        return f"cannot read the TensorRT version ({getattr(trt, '__version__', None)!r})"
    if major < MIN_MAJOR:
        return f"TensorRT {trt.__version__} found; strongly typed networks need {MIN_MAJOR} or newer"
    try:
        import torch
    except ImportError:
        return "torch is not installed (it holds the engine's GPU buffers)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def typed_graph(source: Path, dest: Path, spec: TensorRtConfig, calibration: np.ndarray,
                validation: Validation | None) -> dict:
    """The strongly typed ONNX graph for `spec.precision`, written to `dest`; its report."""
    import onnx

    from squeezeflow.runtimes.trt_graph import (
        check_typed,
        fold_batchnorm,
        fold_constant_dequantize,
        tensorrt_qdq_problems,
        to_fp16,
    )

    model = onnx.load(str(source))
    if spec.precision == "fp16":
        typed, report = to_fp16(model)
        with atomic_path(dest) as tmp:
            onnx.save(typed, str(tmp))
        report["val_accuracy_drop"] = _val_drop(source, dest, validation)
        return report
    # int8: float weights (a QAT export's asymmetric ones too) and folded batch norms, then symmetric QDQ.
    report = {"folded_dequantize": fold_constant_dequantize(model), "folded_batchnorm": fold_batchnorm(model)}
    with tempfile.TemporaryDirectory() as tmpdir:
        folded = Path(tmpdir) / "folded.onnx"
        onnx.save(model, str(folded))
        qdq = OrtInt8QdqConfig(per_channel=spec.per_channel, symmetric_activations=True, quantize_bias=False,
                               calibration_method=spec.calibration_method, calibration_samples=spec.calibration_samples,
                               max_val_accuracy_drop=spec.max_val_accuracy_drop)
        report.update(OrtInt8Qdq(qdq).build(folded, dest, calibration, validation))
    graph = onnx.load(str(dest))
    check_typed(graph)
    problems = tensorrt_qdq_problems(graph)
    if problems:
        raise ValueError(f"the int8 graph is not what TensorRT takes: {'; '.join(problems[:3])}")
    return report


def _val_drop(reference: Path, typed: Path, validation: Validation | None) -> float | None:
    """Validation accuracy the typed graph loses against the fp32 export, run by ONNX Runtime on the CPU (fp16
    arithmetic as the graph says; the GPU's kernels may round differently, which validation on the device shows)."""
    if validation is None:
        return None
    from squeezeflow.onnxio import onnx_logits

    x, y = validation
    ref, out = onnx_logits(reference, x), onnx_logits(typed, x)
    return round(float(((ref.argmax(1) == y).mean() - (out.argmax(1) == y).mean()) * 100.0), 4)


class TensorRt(Builder):
    name, Config, produces = "tensorrt", TensorRtConfig, "tensorrt-plan"  # model.plan beside the typed model.onnx

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        from squeezeflow.export.onnx import check_onnx_file

        spec: TensorRtConfig = self.config
        check_onnx_file(source)
        report = {"precision": spec.precision, "graph": typed_graph(source, dest, spec, calibration, validation)}
        reason = unavailable()
        if reason:
            return {**report, "engine": None, "unavailable": reason}
        return {**report, "engine": build_engine(dest, dest.with_suffix(ENGINE_SUFFIX), spec)}


def build_engine(onnx_path: Path, plan: Path, spec: TensorRtConfig) -> dict:  # pragma: no cover - needs a GPU
    """Parse the typed graph into a strongly typed network and serialize the engine; the timing cache is read
    from and written back to `spec.timing_cache` (if set) and kept beside the engine."""
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 11 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    config.builder_optimization_level = spec.optimization_level
    shared = Path(spec.timing_cache) if spec.timing_cache else None
    seed = shared.read_bytes() if shared and shared.is_file() else b""
    cache = config.create_timing_cache(seed)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # made on another GPU/driver/TensorRT: start anew
        seed, cache = b"", config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    sample = tuple(inp.shape)[1:]
    if any(d < 0 for d in sample):
        raise RuntimeError(f"{onnx_path}: input '{inp.name}' has dynamic dimensions {tuple(inp.shape)} beyond the "
                           "batch; the engine's optimization profile needs them fixed")
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, *sample), (spec.opt_batch, *sample), (spec.max_batch, *sample))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    with atomic_path(plan) as tmp:
        tmp.write_bytes(bytes(serialized))
    cache_bytes = bytes(cache.serialize())
    with atomic_path(plan.with_suffix(".timing.cache")) as tmp:
        tmp.write_bytes(cache_bytes)
    if shared:
        with atomic_path(shared) as tmp:
            tmp.write_bytes(cache_bytes)
    props = torch.cuda.get_device_properties(0)
    return {"file": plan.name, "sha256": sha256_file(plan), "bytes": plan.stat().st_size,
            "tensorrt": trt.__version__, "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "strongly_typed": True, "timing_cache_seeded": bool(seed),
            "build_config": spec.model_dump(mode="json", exclude={"builder"})}


@register_runtime
class TensorRtRuntime(Runtime):  # pragma: no cover - needs TensorRT and a CUDA GPU
    """A TensorRT engine (`model.plan` beside the typed `model.onnx` the build wrote) on GPU 0; inputs are copied to
    the GPU and the logits back, so latency is what a caller on the host sees."""

    name = "tensorrt"
    runs = frozenset({"tensorrt-plan"})
    builders = (TensorRt,)
    companions = (ENGINE_SUFFIX,)  # the serialized engine the build wrote beside the typed model.onnx

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        import tensorrt as trt
        import torch

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
        return unavailable()

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        return {"device": "cuda:0", "engine": "model.plan (beside the typed model.onnx)", "threads": threads}

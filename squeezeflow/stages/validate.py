"""Stage 8 (per target): on-device validation through the target's runtime, in a process of its own under the
target's constraints (threads, CPU affinity, memory cap). A model the runtime cannot run there, or a runtime that
is unavailable here (TensorRT without a GPU), gives metrics with an `error`: the stage succeeds, and the target's
gate fails with that reason."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.export.onnx import check_onnx_file
from squeezeflow.onnxio import onnx_logits
from squeezeflow.runtimes import measure, measure_isolated
from squeezeflow.runtimes.engines import engine_unavailable
from squeezeflow.runtimes.measure import gzip_bytes
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    model = ctx.input(stage_name("build", ctx.target.name)) / "model.onnx"
    check_onnx_file(model)  # a missing or corrupt file is bad input (one clear error), not a device failure
    runtime, x, y = ctx.target.runtime, splits.x["test"], splits.y["test"]
    reason = engine_unavailable(runtime)
    if reason:
        return {"error": f"unavailable: {reason}", "unavailable": reason, "runtime": runtime,
                "model_bytes": model.stat().st_size, "model_gzip_bytes": gzip_bytes(model), "test_samples": len(y)}
    # The exported model as run by ONNX Runtime here: what the runtime on the device should agree with.
    reference = onnx_logits(ctx.input("exported") / "model.onnx", x).argmax(1)
    how = measure_isolated if ctx.target.measure.isolated else measure
    return how(model, x, y, ctx.target.measure, runtime, reference)


STAGE = register_stage(Stage(
    "validate", run, deps=("dataset", "exported", "build"), target_params=("runtime", "measure"),
    code=("squeezeflow.runtimes.measure", "squeezeflow.runtimes.engines", "squeezeflow.stats"), per_target=True,
    asset="validated", timings=("latency_*", "throughput_per_s", "load_ms", "peak_rss_mb", "cpus"),
    needs_timings=True, kinds=("onnx", "dvc"), description="on-device validation in a constrained process: "
    "accuracy, agreement with the exported model's predictions, bytes, latency p50/p95/p99, throughput, load time "
    "and peak RSS through the target's runtime"))

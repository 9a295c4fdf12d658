"""Stage 8 (per target): on-device validation through the target's runtime, in a process of its own under the
target's constraints (threads, CPU affinity, memory cap). A model the runtime cannot run there gives metrics with
an `error`: the stage succeeds, and the target's gate fails with that reason."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.export.onnx import check_onnx_file
from squeezeflow.runtimes import measure, measure_isolated
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    model = ctx.input(stage_name("build", ctx.target.name)) / "model.onnx"
    check_onnx_file(model)  # a missing or corrupt file is bad input (one clear error), not a device failure
    spec = ctx.target.measure
    how = measure_isolated if spec.isolated else measure
    return how(model, splits.x["test"], splits.y["test"], spec, ctx.target.runtime)


STAGE = register_stage(Stage(
    "validate", run, deps=("dataset", "build"), target_params=("runtime", "measure"),
    code=("squeezeflow.runtimes.measure", "squeezeflow.stats"), per_target=True, asset="validated",
    timings=("latency_*", "throughput_per_s", "load_ms", "peak_rss_mb", "cpus"), needs_timings=True,
    kinds=("onnx", "dvc"), description="on-device validation in a constrained process: accuracy, bytes, "
    "latency p50/p95/p99, throughput, load time and peak RSS through the target's runtime"))

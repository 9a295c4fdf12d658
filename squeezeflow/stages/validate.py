"""Stage 8 (per target): on-device validation through the target's runtime."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.runtimes import measure
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    model = ctx.input(stage_name("build", ctx.target.name)) / "model.onnx"
    return measure(model, splits.x["test"], splits.y["test"], ctx.target.measure)


STAGE = register_stage(Stage(
    "validate", run, deps=("dataset", "build"), target_params=("runtime", "measure"),
    code=("squeezeflow.runtimes.measure", "squeezeflow.stats"), per_target=True, asset="validated",
    timings=("latency_p50_ms", "latency_p95_ms", "throughput_per_s"), needs_timings=True, kinds=("onnxruntime", "dvc"),
    description="on-device validation: accuracy, bytes, latency p50/p95 and throughput through the target's runtime"))

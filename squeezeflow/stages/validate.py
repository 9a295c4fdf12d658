"""Stage 8 (per target): on-device validation through the target's runtime."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.runtimes import measure
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.targets import TargetProfile


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    model = ctx.input(f"build-{ctx.target.name}") / "model.onnx"
    return measure(model, splits.x["test"], splits.y["test"], ctx.target.measure)


def stage_for(target: TargetProfile) -> Stage:
    return Stage(f"validate-{target.name}", run, deps=("dataset", f"build-{target.name}"),
                 target_params=("runtime", "measure"), code=("squeezeflow.runtimes.measure", "squeezeflow.stats"), target=target,
                 timings=("latency_p50_ms", "latency_p95_ms", "throughput_per_s"), needs_timings=True,
                 description=f"{target.name} on-device validation")

"""Stage 7 (per target): build the target's deployable model with the builder its profile names."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.runtimes import BUILDERS
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.targets import TargetProfile


def run(ctx: StageContext) -> dict:
    spec = ctx.target.build
    splits = Splits.load(ctx.input("dataset"))
    dest = ctx.out / "model.onnx"
    info = BUILDERS[spec.builder]().build(ctx.input("exported") / "model.onnx", dest, spec, splits.x["train"],
                                          (splits.x["val"], splits.y["val"]))
    return {"builder": spec.builder, "model_bytes": dest.stat().st_size, **info}


def stage_for(target: TargetProfile) -> Stage:
    return Stage(f"build-{target.name}", run, deps=("dataset", "exported"), target_params=("runtime", "build"),
                 code=("squeezeflow.runtimes.builders",), target=target, description=f"{target.name} build")

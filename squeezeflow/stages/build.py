"""Stage 7 (per target): build the target's deployable model with the builder its profile names."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.runtimes import build_artifact
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.targets import TargetProfile


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    return build_artifact(ctx.target.build, ctx.input("exported") / "model.onnx", ctx.out / "model.onnx",
                          splits.x["train"], (splits.x["val"], splits.y["val"]))


def stage_for(target: TargetProfile) -> Stage:
    return Stage(f"build-{target.name}", run, deps=("dataset", "exported"), target_params=("runtime", "build"),
                 code=("squeezeflow.runtimes",), target=target, description=f"{target.name} build")

"""Stage 7 (per target): build the target's deployable model, from the export of the recipe it selected, with the
builder its profile names."""

from __future__ import annotations

from squeezeflow.runtimes import build_artifact
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name


def run(ctx: StageContext) -> dict:
    splits = ctx.splits()
    source = ctx.input(stage_name("select", ctx.target.name)) / "model.onnx"  # the export of the chosen recipe
    return build_artifact(ctx.target.build, source, ctx.out / "model.onnx",
                          splits.x["train"], (splits.x["val"], splits.y["val"]))


STAGE = register_stage(Stage(
    "build", run, deps=("dataset", "select"), target_params=("runtime", "build"), code=("squeezeflow.runtimes",),
    per_target=True, kinds=("onnx", "dvc"), description="build of the exported model with the target's builder"))

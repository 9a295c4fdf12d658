"""Stage 7 (per target): the target's deployable model, built from the export of the recipe it selected with the
builder its profile names; or, when the select stage built its candidates to choose among them, the winner's
build as it was measured there (one build, not two)."""

from __future__ import annotations

import shutil

from squeezeflow.io import read_json
from squeezeflow.runtimes import build_artifact
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name
from squeezeflow.stages.select import BUILT
from squeezeflow.stages.validate import REFERENCE


def run(ctx: StageContext) -> dict:
    selected = ctx.input(stage_name("select", ctx.target.name))
    # A copy, not a dep of validation on the select stage: a new selection record with the same winner changes
    # nothing here, so validation is reused (DVC's cache holds the file once: same content as the export).
    shutil.copyfile(selected / "model.onnx", ctx.out / REFERENCE)
    if (selected / BUILT / "build.json").exists():  # built (and measured) there to choose it: not built again
        for f in sorted((selected / BUILT).iterdir()):
            if f.name != "build.json":
                shutil.copyfile(f, ctx.out / f.name)
        return read_json(selected / BUILT / "build.json")
    splits = ctx.splits()
    return build_artifact(ctx.target.build, selected / "model.onnx", ctx.out / "model.onnx",  # the chosen export
                          splits.x["train"], (splits.x["val"], splits.y["val"]))


STAGE = register_stage(Stage(
    "build", run, deps=("dataset", "select"), target_params=("runtime", "build"), code=("squeezeflow.runtimes",),
    per_target=True, kinds=("onnx", "dvc"), description="build of the exported model with the target's builder"))

"""Stage 4b: the candidate recipes the targets list (`recipes:` in a target's YAML), each run on the teacher —
compressed, fine-tuned and exported like the main line — so every target can choose among them (the select
stage). The run's own recipe is not run again here: its export is the main line's."""

from __future__ import annotations

import copy
import re

from squeezeflow.compression.recipe import parse_recipe
from squeezeflow.export import export_onnx, parity
from squeezeflow.io import write_json
from squeezeflow.models import parameter_counts
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stages.compressed import compress_context
from squeezeflow.training import accuracy


def folder(recipe: str) -> str:
    """A recipe's name (or path) as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", recipe)


def run(ctx: StageContext) -> dict:
    main = ctx.recipes["main"]["name"]
    names = [n for n in ctx.recipes.get("candidates", {}) if n != main]
    report: dict[str, dict] = {}
    if names:
        cctx, splits = compress_context(ctx)
        val = (splits.x["val"], splits.y["val"])
        for name in names:
            recipe = parse_recipe(ctx.recipes["candidates"][name], ctx.recipes_source)
            model, spec, _ = recipe.run(copy.deepcopy(cctx.teacher), cctx)
            recipe.recover(model, cctx)
            path = ctx.out / folder(name) / "model.onnx"
            path.parent.mkdir(parents=True)
            how = export_onnx(model, spec.input_shape, path, ctx.params.export.opset, spec.input_dtype,
                              ctx.params.export.exporter)
            match = parity(model, path, val[0])
            report[name] = {"val_accuracy": accuracy(model, *val), **parameter_counts(model), **match, **how,
                            "export_matches": match["max_abs_diff"] <= ctx.params.export.parity_atol
                            and match["argmax_agreement"] == 1.0}
    write_json(ctx.out / "alternatives.json", report)
    return {"recipes": sorted(report), **{f"{n}.val_accuracy": r["val_accuracy"] for n, r in report.items()}}


STAGE = register_stage(Stage(
    "alternatives", run, deps=("dataset", "teacher"), params=("seed", "export"),
    recipe_params=("main.name", "candidates"), artifacts=("alternatives.json",),
    code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.compression", "squeezeflow.export"),
    kinds=("pytorch", "onnx", "dvc"), asset="candidate_recipes",
    description="The candidate recipes the targets list, each compressed, fine-tuned and exported from the teacher "
    "(none when no target lists any)."))

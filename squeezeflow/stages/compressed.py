"""Stage 4 (per recipe): compress the teacher with the recipe's steps (techniques in squeezeflow/compression). One
stage per recipe of the run: its own and each candidate a target lists, so changing one reruns only its chain."""

from __future__ import annotations

from squeezeflow.compression import CompressContext, sparsity
from squeezeflow.data import Splits
from squeezeflow.io import write_json, write_yaml
from squeezeflow.models import load_checkpoint, parameter_counts, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.training import accuracy


def stage_recipe(ctx: StageContext):
    """This per-recipe stage's recipe as recorded in .squeezeflow/recipes.yaml (what DVC tracks), not re-read from
    recipes/. (Here, not on StageContext: a stage that never compresses must not import the techniques.)"""
    from squeezeflow.compression.recipe import parse_recipe

    return parse_recipe(ctx.recipes["recipes"][ctx.recipe_key], ctx.recipes_source)


def compress_context(ctx: StageContext) -> tuple[CompressContext, Splits]:
    splits = ctx.splits()
    teacher, tspec = load_checkpoint(ctx.input("teacher") / "model.pt")
    cache = None if ctx.cache is None else ctx.cache / "teacher-logits"
    return CompressContext(teacher, tspec, (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"]),
                           ctx.params.seed, cache=cache), splits


def model_stats(model) -> dict:
    return {**parameter_counts(model), "sparsity": sparsity(model)}


def run(ctx: StageContext) -> dict:
    recipe = stage_recipe(ctx)
    cctx, splits = compress_context(ctx)
    test = (splits.x["test"], splits.y["test"])
    model, spec, report = recipe.run(cctx.teacher, cctx, on_step=lambda a: {"test_accuracy": accuracy(a.model, *test),
                                                                              **model_stats(a.model)})
    save_checkpoint(ctx.out / "model.pt", model, spec)
    write_yaml(ctx.out / "recipe.yaml", {k: v for k, v in recipe.to_dict().items() if k != "finetune"})
    write_json(ctx.out / "steps.json", report)
    return {"recipe": recipe.name, "test_accuracy": accuracy(model, *test), **model_stats(model),
            "steps": {f"{r['step']}_{r['technique']}": {k: v for k, v in r.items() if k not in ("step", "technique")}
                      for r in report}}


STAGE = register_stage(Stage(
    "compressed", run, deps=("dataset", "teacher"), params=("seed",), per_recipe=True,
    recipe_params=("name", "steps"), code=("squeezeflow.models", "squeezeflow.training",
                                                     "squeezeflow.compression"),
    artifacts=("recipe.yaml", "steps.json"), kinds=("pytorch", "dvc"),
    description="The recipe's compression steps (distillation, pruning, factorization, quantization)."))

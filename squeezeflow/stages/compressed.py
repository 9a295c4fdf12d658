"""Stage 4: compress the teacher with the chosen recipe's steps (techniques in squeezeflow/compression)."""

from __future__ import annotations

from squeezeflow.compression import CompressContext, sparsity
from squeezeflow.data import Splits
from squeezeflow.io import write_json, write_yaml
from squeezeflow.models import load_checkpoint, parameter_counts, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.training import accuracy


def compress_context(ctx: StageContext) -> tuple[CompressContext, Splits]:
    splits = ctx.splits()
    teacher, tspec = load_checkpoint(ctx.input("teacher") / "model.pt")
    return CompressContext(teacher, tspec, (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"]),
                           ctx.params.seed), splits


def model_stats(model) -> dict:
    return {**parameter_counts(model), "sparsity": sparsity(model)}


def run(ctx: StageContext) -> dict:
    recipe = ctx.recipe()
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
    "compressed", run, deps=("dataset", "teacher"), params=("seed", "compress"),
    recipe_params=("main.name", "main.steps"), code=("squeezeflow.models", "squeezeflow.training",
                                                     "squeezeflow.compression"),
    artifacts=("recipe.yaml", "steps.json"), kinds=("pytorch", "dvc"),
    description="The recipe's compression steps (distillation, pruning, factorization, quantization)."))

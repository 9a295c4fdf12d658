"""Stage 5 (per recipe): the recipe's recovery fine-tuning of the compressed model; pruned weights stay zero and
quantized layers keep their bit widths."""

from __future__ import annotations

from squeezeflow.io import write_yaml
from squeezeflow.models import load_checkpoint, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stages.compressed import compress_context, model_stats, stage_recipe
from squeezeflow.training import accuracy


def run(ctx: StageContext) -> dict:
    recipe = stage_recipe(ctx)
    cctx, splits = compress_context(ctx)
    model, spec = load_checkpoint(ctx.input("compressed") / "model.pt")
    result = recipe.recover(model, cctx)
    save_checkpoint(ctx.out / "model.pt", model, spec)
    write_yaml(ctx.out / "recipe-finetune.yaml", {"name": recipe.name, "finetune": recipe.to_dict()["finetune"]})
    return {"test_accuracy": accuracy(model, splits.x["test"], splits.y["test"]), **model_stats(model),
            "finetune_epochs": result.get("epochs", 0), "finetune_steps": result.get("steps", 0),
            "val_accuracy": result.get("val_accuracy")}


STAGE = register_stage(Stage(
    "finetuned", run, deps=("dataset", "teacher", "compressed"), params=("seed",), per_recipe=True,
    recipe_params=("finetune",), artifacts=("recipe-finetune.yaml",),
    code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.compression"), kinds=("pytorch", "dvc"),
    description="Recovery fine-tuning of the compressed model; pruned weights stay zero."))

"""Stage 5: recovery fine-tuning of the compressed model; pruned weights stay zero."""

from __future__ import annotations

from squeezeflow.compression import apply_masks, sparsity, weight_masks
from squeezeflow.data import Splits
from squeezeflow.models import load_checkpoint, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.training import accuracy, fit


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    model, spec = load_checkpoint(ctx.input("compressed") / "model.pt")
    masks = weight_masks(model)
    train, val, test = ((splits.x[s], splits.y[s]) for s in ("train", "val", "test"))
    result = fit(model, train, val, ctx.params.finetune.train, ctx.params.seed, desc="finetune",
                 after_step=lambda: apply_masks(masks))
    save_checkpoint(ctx.out / "model.pt", model, spec)
    return {
        "val_accuracy": result.best_val_accuracy,
        "test_accuracy": accuracy(model, *test),
        "epochs": result.epochs_run,
        "sparsity": sparsity(model),
    }


STAGE = Stage("finetuned", run, deps=("dataset", "compressed"), params=("seed", "finetune"),
              code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.compression"),
              description="fine-tuned compressed model")

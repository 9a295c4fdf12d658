"""Stage 4: compress with the default recipe: distil the teacher into a smaller student, then magnitude-prune."""

from __future__ import annotations

from squeezeflow.compression import distill, magnitude_prune, sparsity
from squeezeflow.data import Splits
from squeezeflow.models import ModelSpec, build_model, load_checkpoint, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.training import accuracy, seed_everything


def run(ctx: StageContext) -> dict:
    splits = Splits.load(ctx.input("dataset"))
    teacher, tspec = load_checkpoint(ctx.input("teacher") / "model.pt")
    p = ctx.params.compress
    spec = ModelSpec("mlp", tspec.input_shape, tspec.num_classes, p.distill.student_hidden)
    seed_everything(ctx.params.seed)
    student = build_model(spec)
    train, val, test = ((splits.x[s], splits.y[s]) for s in ("train", "val", "test"))
    result = distill(teacher, student, train, val, p.distill, ctx.params.seed)
    distilled_acc = accuracy(student, *test)
    magnitude_prune(student, p.prune.sparsity, p.prune.scope)
    save_checkpoint(ctx.out / "model.pt", student, spec)
    return {
        "distilled_test_accuracy": distilled_acc,
        "pruned_test_accuracy": accuracy(student, *test),
        "distill_epochs": result.epochs_run,
        "sparsity": sparsity(student),
        "parameters": sum(x.numel() for x in student.parameters()),
        "nonzero_parameters": sum(int((x != 0).sum()) for x in student.parameters()),
    }


STAGE = Stage("compressed", run, deps=("dataset", "teacher"), params=("seed", "compress"),
              code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.compression"),
              description="distilled + pruned student")

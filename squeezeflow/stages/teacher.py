"""Stage 3: train big. A large model, its inputs standardized inside it, trained on the strong schedule."""

from __future__ import annotations

import time

from squeezeflow.config import TeacherParams
from squeezeflow.data import Splits
from squeezeflow.io import read_json
from squeezeflow.models import ModelSpec, resolve_arch, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stats import wilson_interval
from squeezeflow.training import accuracy, train_from_scratch


def data_meta(ctx: StageContext) -> dict:
    return read_json(ctx.input("dataset") / "metrics.json")


def teacher_spec(p: TeacherParams, meta: dict, x_train) -> ModelSpec:
    """The teacher's architecture, `auto` resolved on the train split."""
    arch, hidden = resolve_arch(p.arch, p.hidden, x_train)
    return ModelSpec(arch, tuple(meta["input_shape"]), meta["num_classes"], hidden, p.dropout, dict(p.extra))


def run(ctx: StageContext) -> dict:
    meta, splits = data_meta(ctx), Splits.load(ctx.input("dataset"))
    p = ctx.params.teacher
    spec = teacher_spec(p, meta, splits.x["train"])
    t0 = time.perf_counter()
    model, result = train_from_scratch(spec, (splits.x["train"], splits.y["train"]),
                                       (splits.x["val"], splits.y["val"]), p.train, ctx.params.seed,
                                       normalize=p.normalize == "feature", desc="teacher")
    save_checkpoint(ctx.out / "model.pt", model, spec)
    test_acc, n_test = accuracy(model, splits.x["test"], splits.y["test"]), len(splits.y["test"])
    return {
        "val_accuracy": result.best_val_accuracy,
        "test_accuracy": test_acc,
        "test_accuracy_ci95": list(wilson_interval(round(test_acc * n_test / 100), n_test)),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "arch": spec.arch,
        "hidden": list(spec.hidden),
        "train_seconds": time.perf_counter() - t0,
    }


STAGE = register_stage(Stage(
    "teacher", run, deps=("dataset",), params=("seed", "teacher"),
    code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.stats"), timings=("train_seconds",),
    description="Train big: the teacher (inputs standardized inside it, the strong schedule).",
    kinds=("pytorch", "dvc")))

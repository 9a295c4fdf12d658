"""Stage 3: train big. A large model, early-stopped on the validation split."""

from __future__ import annotations

import time

from squeezeflow.data import Splits
from squeezeflow.io import read_json
from squeezeflow.models import ModelSpec, build_model, save_checkpoint
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.training import accuracy, seed_everything, fit


def data_meta(ctx: StageContext) -> dict:
    return read_json(ctx.input("dataset") / "metrics.json")


def run(ctx: StageContext) -> dict:
    meta, splits = data_meta(ctx), Splits.load(ctx.input("dataset"))
    p = ctx.params.teacher
    spec = ModelSpec(p.arch, tuple(meta["input_shape"]), meta["num_classes"], p.hidden, p.dropout, dict(p.extra))
    seed_everything(ctx.params.seed)
    model = build_model(spec)
    t0 = time.perf_counter()
    result = fit(model, (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"]), p.train,
                 ctx.params.seed, desc="teacher")
    save_checkpoint(ctx.out / "model.pt", model, spec)
    return {
        "val_accuracy": result.best_val_accuracy,
        "test_accuracy": accuracy(model, splits.x["test"], splits.y["test"]),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": time.perf_counter() - t0,
    }


STAGE = Stage("teacher", run, deps=("dataset",), params=("seed", "teacher"),
              code=("squeezeflow.models", "squeezeflow.training"), description="the big teacher model",
              timings=("train_seconds",))

"""Stage 3: train big. A large model, its inputs standardized inside it, trained on the strong schedule."""

from __future__ import annotations

import time

from torch import nn

from squeezeflow.config import TeacherParams
from squeezeflow.data import Splits
from squeezeflow.io import read_json
from squeezeflow.models import ModelSpec, count_parameters, resolve_arch, save_checkpoint
from squeezeflow.models.user import check_onnx_teacher, check_user_model, onnx_spec, python_spec
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stats import wilson_interval
from squeezeflow.training import accuracy, distributed, seed_everything, train_from_scratch
from squeezeflow.training.build import train_model


def data_meta(ctx: StageContext) -> dict:
    return read_json(ctx.input("dataset") / "metrics.json")


def teacher_spec(p: TeacherParams, meta: dict, x_train) -> ModelSpec:
    """The teacher's architecture, `auto` resolved on the train split."""
    arch, hidden = resolve_arch(p.arch, p.hidden, x_train)
    return ModelSpec(arch, tuple(meta["input_shape"]), meta["num_classes"], hidden, p.dropout, dict(p.extra))


def user_teacher(ctx: StageContext, meta: dict, splits: Splits) -> tuple[nn.Module, ModelSpec, dict]:
    """The user's model: built by their factory, from their checkpoint, checked on two samples; trained here unless
    `train: false` (then only evaluated)."""
    p, src, where = ctx.params.teacher, ctx.params.teacher.source, ctx.params_source
    spec = python_spec(src, tuple(meta["input_shape"]), meta["num_classes"], meta.get("input_dtype", "float32"))
    seed_everything(ctx.params.seed)
    model = check_user_model(src, splits.x["train"], spec.num_classes, where)
    if not src.train:
        return model.eval(), spec, {"epochs": 0, "best_epoch": 0, "trained": False,
                                    "val_accuracy": accuracy(model, splits.x["val"], splits.y["val"])}
    model, result = train_model(model, (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"]),
                                p.train, ctx.params.seed, normalize=p.normalize == "feature", desc="teacher")
    return model, spec, {**result.metrics(), "best_epoch": result.best_epoch, "trained": True}


def onnx_teacher(ctx: StageContext, meta: dict, splits: Splits) -> tuple[nn.Module, ModelSpec, dict]:
    """An exported model: evaluated, never trained (its outputs teach the recipe's student)."""
    src = ctx.params.teacher.source
    model = check_onnx_teacher(src, splits.x["train"], meta["num_classes"], ctx.params_source)
    spec = onnx_spec(src, tuple(meta["input_shape"]), meta["num_classes"], meta.get("input_dtype", "float32"))
    return model, spec, {"epochs": 0, "best_epoch": 0, "trained": False,
                         "val_accuracy": accuracy(model, splits.x["val"], splits.y["val"])}


def run(ctx: StageContext) -> dict:
    p = ctx.params.teacher
    if p.train.processes > 1 and not distributed.active() and p.source.kind != "onnx":
        return distributed.launch("squeezeflow.stages.teacher:run", ctx, p.train.processes)
    meta, splits = data_meta(ctx), ctx.splits()
    t0 = time.perf_counter()
    if ctx.scale is None and p.source.kind == "onnx":
        model, spec, fitted = onnx_teacher(ctx, meta, splits)
    elif ctx.scale is None and p.source.kind != "builtin":
        model, spec, fitted = user_teacher(ctx, meta, splits)
    else:  # built in; a sweep point trains the built-in architecture at its size
        spec = teacher_spec(p, meta, splits.x["train"])
        spec = spec if ctx.scale is None else spec.scaled(ctx.scale)
        model, result = train_from_scratch(spec, (splits.x["train"], splits.y["train"]),
                                           (splits.x["val"], splits.y["val"]), p.train, ctx.params.seed,
                                           normalize=p.normalize == "feature", desc="teacher")
        fitted = {**result.metrics(), "best_epoch": result.best_epoch}
    save_checkpoint(ctx.out / "model.pt", model, spec)
    test_acc, n_test = accuracy(model, splits.x["test"], splits.y["test"]), len(splits.y["test"])
    return {
        **fitted,
        "test_accuracy": test_acc,
        "test_accuracy_ci95": list(wilson_interval(round(test_acc * n_test / 100), n_test)),
        "parameters": count_parameters(model),
        "arch": spec.arch if p.source.kind == "builtin" or ctx.scale is not None else p.source.label(),
        "hidden": list(spec.hidden),
        "train_seconds": time.perf_counter() - t0,
    }


STAGE = register_stage(Stage(
    "teacher", run, deps=("dataset",), params=("seed", "teacher"), input_params=("model",),
    code=("squeezeflow.models", "squeezeflow.training", "squeezeflow.stats"), timings=("train_seconds",),
    per_scale=True,
    description="Train big: the teacher (inputs standardized inside it, the strong schedule).",
    kinds=("pytorch", "dvc")))

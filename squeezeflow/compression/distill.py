"""Offline knowledge distillation: a frozen, trained teacher teaches a new, smaller student.

Soft targets are the teacher's temperature-softened outputs (KL) or its raw logits (MSE), mixed with the labels'
cross-entropy. An optional hint loss (FitNets) also pulls the student's penultimate features towards the
teacher's through a learned linear projection, which is thrown away after training.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, TechniqueConfig, register_technique
from squeezeflow.config import TrainParams
from squeezeflow.models import (
    ARCHS,
    DEFAULT_HIDDEN,
    ModelSpec,
    Standardize,
    build_model,
    choose_arch,
    count_parameters,
    input_norm,
    with_input_norm,
)
from squeezeflow.training import distillation_loss, seed_everything


class StudentSpec(TechniqueConfig):
    """The student: by default the teacher's architecture at `width` of its size (a CNN teacher's 128-256-256
    channels become 16-32-32, an MLP's 512-512 widths 64-64), so one recipe fits images, signals and tables.

    A user's teacher (teacher.source python): the student is the teacher's factory with `kwargs` merged into the
    teacher's (a width or depth argument), another `factory`, or, when neither is given, the teacher itself with
    `channels` of each layer's channels kept by structured pruning (Torch-Pruning), its weights the start."""

    arch: str | None = Field(None, description="null: the teacher's architecture")
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                                description="a user model's student: 'module:function' (null: the teacher's)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="factory kwargs, merged into the teacher's")
    channels: float = Field(0.25, gt=0, le=1, description="a student pruned from a user's teacher keeps this "
                            "fraction of each layer's channels")
    hidden: tuple[int, ...] | None = Field(None, description="widths (mlp) or channels (cnn); null: `width` times "
                                           "the teacher's (or the architecture's default)")
    width: float = Field(0.125, gt=0, le=4, description="fraction of the teacher's hidden sizes, when hidden is null")
    dropout: float = Field(0.0, ge=0, lt=1)
    extra: dict[str, int | float | str] = {}

    @model_validator(mode="after")
    def _known(self) -> StudentSpec:
        if self.arch is not None and self.arch not in ARCHS:
            raise ValueError(f"unknown architecture '{self.arch}'; known: {sorted(ARCHS)}")
        if self.hidden is not None and (not self.hidden or any(h < 1 for h in self.hidden)):
            raise ValueError(f"every width must be >= 1, got {list(self.hidden)}")
        return self

    def derived_from_teacher(self, like: ModelSpec) -> bool:
        """A user's teacher and no factory or kwargs: the student is the teacher, pruned."""
        return like.arch == "python" and self.factory is None and not self.kwargs and self.arch is None

    def spec(self, like: ModelSpec, x=None) -> ModelSpec:
        """The student's spec next to the teacher's (`x`: training inputs, to choose an architecture for an ONNX
        teacher when the recipe names none)."""
        if like.arch == "onnx":  # nothing to take from the teacher but its input and output
            if self.factory:
                return ModelSpec("python", like.input_shape, like.num_classes, input_dtype=like.input_dtype,
                                 extra={"factory": self.factory, "kwargs": dict(self.kwargs)})
            arch = self.arch or (choose_arch(x) if x is not None else "mlp")
            hidden = self.hidden or tuple(max(4, round(h * self.width)) for h in DEFAULT_HIDDEN.get(arch, (64,)))
            return ModelSpec(arch, like.input_shape, like.num_classes, hidden, self.dropout, dict(self.extra),
                             input_dtype=like.input_dtype)
        if like.arch == "python" and self.arch is None:
            if self.derived_from_teacher(like):
                return like
            kwargs = {**(like.extra.get("kwargs") or {}), **self.kwargs} if self.factory is None else self.kwargs
            return ModelSpec("python", like.input_shape, like.num_classes, input_dtype=like.input_dtype,
                             extra={"factory": self.factory or like.extra["factory"], "kwargs": dict(kwargs)})
        arch = self.arch or like.arch
        base = like.hidden if arch == like.arch else DEFAULT_HIDDEN.get(arch, (64,))
        hidden = self.hidden or tuple(max(4, round(h * self.width)) for h in base)
        extra = dict(self.extra) if self.extra or arch != like.arch else dict(like.extra)
        return ModelSpec(arch, like.input_shape, like.num_classes, hidden, self.dropout, extra)


class SoftTargets(TechniqueConfig):
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss; 1 - alpha on the labels")
    loss: Literal["kl", "mse"] = "kl"


class HintSpec(TechniqueConfig):
    student: str = Field(min_length=1, description="module path in the student (e.g. layer3)")
    teacher: str = Field(min_length=1, description="module path in the teacher whose output it learns")


class DistillConfig(SoftTargets):
    student: StudentSpec = StudentSpec()
    hint_weight: float = Field(0.0, ge=0, description="weight of the feature (hint) loss; 0 = off")
    hint: HintSpec | None = Field(None, description="the modules whose outputs the hint loss matches (pooled per "
                                  "sample, through a learned projection); null: the penultimate layer of built-in "
                                  "models")
    train: TrainParams = TrainParams(epochs=150, max_steps=20_000, patience=15, lr=3e-3)  # a budget on large data
    stop_at_teacher: bool = Field(False, description="end training as soon as the student's validation accuracy "
                                  "reaches the teacher's: a long schedule costs little where the student catches "
                                  "up early")


def make_student(cfg: StudentSpec, teacher: nn.Module, ctx: CompressContext) -> tuple[nn.Module, ModelSpec]:
    """A new student (seeded) behind the teacher's input normalization, or the teacher pruned (see StudentSpec)."""
    from squeezeflow.compression.channels import prune_channels

    spec = cfg.spec(ctx.teacher_spec, ctx.train[0])
    seed_everything(ctx.seed)
    if cfg.derived_from_teacher(ctx.teacher_spec):
        return prune_channels(teacher, ctx.example(), 1 - cfg.channels), spec
    norm = input_norm(teacher)
    if norm is None and ctx.teacher_spec.arch == "onnx" and np.issubdtype(ctx.train[0].dtype, np.floating):
        norm = Standardize.fit(ctx.train[0])  # the ONNX file keeps its own scaling inside: the student needs one
    return with_input_norm(build_model(spec), norm), spec


def features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The classifier's input: everything but the last layer."""
    return model[:-1](x)


def kd_loss_fn(teacher: nn.Module, cfg: SoftTargets):
    """The soft-target loss against a frozen teacher. It carries the teacher (`loss.teacher`): inputs are never
    augmented here, so CompressContext.fit computes the teacher's outputs once per sample and passes them with each
    batch instead of running the teacher on every batch of every epoch."""
    teacher.eval()

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if t is None:
            with torch.no_grad():
                t = teacher(x)
        return distillation_loss(logits, t, y, cfg.temperature, cfg.alpha, cfg.loss)

    loss.teacher = teacher
    return loss


# Modules whose 3-D output is (N, channels, length); any other 3-D output is taken as (N, tokens, features).
_CHANNELS_FIRST_1D = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)


def pooled(out: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """A module's output as one feature vector per sample: conv maps averaged over space, token sequences over
    tokens, so two models of different resolution or length still compare."""
    if out.dim() == 2:
        return out
    if out.dim() == 3 and not isinstance(module, _CHANNELS_FIRST_1D):
        return out.mean(1)
    return out.flatten(2).mean(2)


class _Tap:
    """The output of the module at `path`, kept from the last forward pass (a forward hook)."""

    def __init__(self, model: nn.Module, path: str):
        from squeezeflow.models.graph import get_module

        try:
            self.module = get_module(model, path)
        except AttributeError:
            raise ValueError(f"hint: no module at '{path}'") from None
        self.value: torch.Tensor | None = None
        self._hook = self.module.register_forward_hook(self._keep)

    def _keep(self, _m, _i, out):
        self.value = pooled(out[0] if isinstance(out, tuple) else out, self.module)

    def remove(self) -> None:
        self._hook.remove()


class _WithHint(nn.Module):
    """The student plus the throwaway projection for the hint loss, trained as one module by `fit`."""

    def __init__(self, student: nn.Module, student_dim: int, teacher_dim: int):
        super().__init__()
        self.student, self.project = student, nn.Linear(student_dim, teacher_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


def hint_paths(cfg: DistillConfig, student: nn.Module, teacher: nn.Module) -> tuple[str, str]:
    """The module paths whose outputs the hint loss compares: as configured (paths in the user's model, resolved
    through the input-normalization wrapper), else the penultimate layer of flat built-in models."""
    from squeezeflow.models.graph import model_path

    if cfg.hint is not None:
        return model_path(student, cfg.hint.student), model_path(teacher, cfg.hint.teacher)
    if type(student) is not nn.Sequential or type(teacher) is not nn.Sequential:
        raise ValueError("hint_weight on a user's model needs hint: {student: PATH, teacher: PATH}, the modules "
                         "whose outputs to match (e.g. layer3 and layer3)")
    return str(len(student) - 2), str(len(teacher) - 2)


@register_technique
class Distill(Technique):
    name, kind, Config = "distill", "student", DistillConfig

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        cfg: DistillConfig = self.config
        teacher = model.eval()  # the model so far (the trained teacher when this is the first step)
        student, spec = make_student(cfg.student, teacher, ctx)
        kd = kd_loss_fn(teacher, cfg)
        goal = self._goal(teacher, ctx)
        if cfg.hint_weight > 0:
            result = self._with_hint(cfg, student, teacher, kd, ctx, goal)
        else:
            result = ctx.fit(student, cfg.train, desc="distill", loss_fn=kd, stop_at=goal)
        return Applied(student.eval(), {**result.metrics(),
                                        "parameters": count_parameters(student)}, spec)

    def _goal(self, teacher: nn.Module, ctx: CompressContext) -> float | None:
        """The teacher's validation accuracy, when the student may stop on reaching it."""
        from squeezeflow.training import accuracy

        return accuracy(teacher, *ctx.val) if self.config.stop_at_teacher else None

    @staticmethod
    def _with_hint(cfg: DistillConfig, student: nn.Module, teacher: nn.Module, kd, ctx: CompressContext,
                   goal: float | None):
        """FitNets: the KD loss plus hint_weight x MSE between the teacher's features at one module and a learned
        projection of the student's at another (the projection is thrown away after training)."""
        s_path, t_path = hint_paths(cfg, student, teacher)
        s_tap, t_tap = _Tap(student, s_path), _Tap(teacher, t_path)
        try:
            with torch.no_grad():
                probe = ctx.example()
                student.eval()(probe), teacher(probe)
            wrapped = _WithHint(student, s_tap.value.shape[1], t_tap.value.shape[1])

            def loss(logits, x, y):
                kd_part = kd(logits, x, y)  # runs the teacher: t_tap now holds its features for this batch
                return kd_part + cfg.hint_weight * F.mse_loss(wrapped.project(s_tap.value), t_tap.value.detach())

            return ctx.fit(wrapped, cfg.train, desc="distill", loss_fn=loss, stop_at=goal)
        finally:
            s_tap.remove()
            t_tap.remove()

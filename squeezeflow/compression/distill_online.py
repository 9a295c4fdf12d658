"""Online distillation (deep mutual learning, Zhang et al. 2018): a student and a peer train together from scratch,
each learning from the labels and from the other's softened outputs. No pre-trained teacher is needed; the peer is
a second student or a fresh model of the teacher's architecture, and only the student is kept."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, TechniqueConfig, register_technique
from squeezeflow.compression.distill import StudentSpec, make_student
from squeezeflow.config import TrainParams
from squeezeflow.models import build_model, input_norm, with_input_norm
from squeezeflow.training import accuracy


class OnlineDistillConfig(TechniqueConfig):
    student: StudentSpec = StudentSpec()
    peer: Literal["student", "teacher"] = Field("student",
                                                description="a second student, or a fresh teacher-sized model")
    temperature: float = Field(1.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the mutual KL term")
    train: TrainParams = TrainParams(epochs=150, max_steps=20_000, patience=15, lr=3e-3)  # a budget on large data


def mutual_kl(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """KL(b || a) on softened outputs: a learns from b, which is held fixed (detached)."""
    return F.kl_div(F.log_softmax(a / t, 1), F.log_softmax(b.detach() / t, 1), reduction="batchmean",
                    log_target=True) * t * t


class Cohort(nn.Module):
    """Student and peer trained as one module by `fit` (Adam is per-parameter, so one optimizer over both equals
    two); forward returns the student's logits, so early stopping follows the student."""

    def __init__(self, student: nn.Module, peer: nn.Module):
        super().__init__()
        self.student, self.peer = student, peer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def loss(self, cfg: OnlineDistillConfig):
        def fn(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            peer = self.peer(x)
            s = (1 - cfg.alpha) * F.cross_entropy(logits, y) + cfg.alpha * mutual_kl(logits, peer, cfg.temperature)
            p = (1 - cfg.alpha) * F.cross_entropy(peer, y) + cfg.alpha * mutual_kl(peer, logits, cfg.temperature)
            return s + p

        return fn


@register_technique
class OnlineDistill(Technique):
    name, kind, Config = "distill-online", "student", OnlineDistillConfig

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        cfg: OnlineDistillConfig = self.config
        student, spec = make_student(cfg.student, ctx.teacher, ctx)
        peer_spec = spec if cfg.peer == "student" else ctx.teacher_spec
        peer = make_student(cfg.student, ctx.teacher, ctx)[0] if cfg.student.derived_from_teacher(ctx.teacher_spec) \
            and cfg.peer == "student" else with_input_norm(build_model(peer_spec), input_norm(ctx.teacher))
        cohort = Cohort(student, peer)
        result = ctx.fit(cohort, cfg.train, desc="online-distill", loss_fn=cohort.loss(cfg))
        return Applied(student.eval(), {**result.metrics(),
                                        "peer_val_accuracy": accuracy(peer, *ctx.val)}, spec)

"""Self-distillation ("born-again networks"): the model so far teaches a freshly initialised copy of itself."""

from __future__ import annotations

import copy

from pydantic import Field
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, register_technique
from squeezeflow.compression.distill import SoftTargets, kd_loss_fn
from squeezeflow.config import TrainParams
from squeezeflow.training import seed_everything


class SelfDistillConfig(SoftTargets):
    train: TrainParams = TrainParams(epochs=150, max_steps=20_000, patience=15, lr=3e-3)  # a budget on large data
    seed_offset: int = Field(1, ge=0, description="the copy starts from a different initialisation than the teacher")


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """Same layers, new random weights (input statistics and other buffers without a reset are kept)."""
    seed_everything(seed)
    copy_ = copy.deepcopy(model)
    for m in copy_.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return copy_


@register_technique
class SelfDistill(Technique):
    name, kind, Config = "distill-self", "student", SelfDistillConfig

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        cfg: SelfDistillConfig = self.config
        teacher = model.eval()
        student = fresh_copy(model, ctx.seed + cfg.seed_offset)
        result = ctx.fit(student, cfg.train, desc="self-distill", loss_fn=kd_loss_fn(teacher, cfg))
        return Applied(student.eval(), result.metrics())

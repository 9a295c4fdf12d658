"""Fine-tuning as a recipe step, and the recovery fine-tuning the `finetuned` stage runs: labels, optionally mixed
with the teacher's soft targets. Pruned weights stay zero and quantized layers keep training through fake-quant."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, register_technique
from squeezeflow.compression.distill import SoftTargets, kd_loss_fn
from squeezeflow.config import TrainParams


class FinetuneConfig(SoftTargets):
    alpha: float = Field(0.0, ge=0, le=1, description="weight of the teacher's soft targets; 0 = labels only")
    train: TrainParams = TrainParams(epochs=30, patience=6, lr=1e-3, weight_decay=0.0)


@register_technique
class Finetune(Technique):
    name, kind, Config = "finetune", "train", FinetuneConfig

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: FinetuneConfig = self.config
        loss = kd_loss_fn(ctx.teacher, cfg) if cfg.alpha > 0 else None
        result = ctx.fit(model, cfg.train, desc="finetune", loss_fn=loss)
        return Applied(model.eval(), result.metrics())

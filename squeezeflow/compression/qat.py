"""Quantization-aware training: quantize as `quantize` does, then train through the fake quantization.

The forward pass always sees the quantized weights; the straight-through estimator hands their gradient to the
fp32 latent weights, so the weights learn to sit well on the integer grid. Optionally distils from the teacher.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, register_technique
from squeezeflow.compression.distill import SoftTargets, kd_loss_fn
from squeezeflow.compression.quantize import QuantizeConfig, quant_metrics, quantize_model, targets
from squeezeflow.config import TrainParams
from squeezeflow.training import accuracy


class QatConfig(QuantizeConfig):
    train: TrainParams = TrainParams(epochs=10, patience=4, lr=5e-4, weight_decay=0.0)
    distill_alpha: float = Field(0.0, ge=0, le=1, description="weight of the teacher's soft targets; 0 = labels only")
    temperature: float = Field(4.0, gt=0, le=100)


def qat_loss(ctx: CompressContext, alpha: float, temperature: float):
    """Cross-entropy (None: ctx.fit's default), or distillation from the teacher when alpha > 0."""
    return kd_loss_fn(ctx.teacher, SoftTargets(temperature=temperature, alpha=alpha)) if alpha > 0 else None


@register_technique
class Qat(Technique):
    name, kind, Config = "qat", "quantize", QatConfig
    handles = (nn.Linear, nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: QatConfig = self.config
        plan = {i: cfg.bits for i in targets(model, cfg)}
        out = quantize_model(model, plan, cfg, ctx.train[0][: cfg.calibration_samples])
        ptq = accuracy(out, *ctx.val)
        # fit restores the best epoch by val accuracy, starting from the quantized model's own: never worse than PTQ
        result = ctx.fit(out, cfg.train, desc="qat", loss_fn=qat_loss(ctx, cfg.distill_alpha, cfg.temperature))
        return Applied(out.eval(), {**quant_metrics(model, plan, out, ctx), "val_accuracy_ptq": ptq,
                                    "epochs": result.epochs_run, "steps": result.steps,
                                    "best_epoch": result.best_epoch})

"""Mixed precision: each layer gets the fewest bits the accuracy budget allows.

1. Sensitivity: the validation accuracy drop when one layer alone is quantized, at each candidate bit width.
2. Choice: starting from fp32 everywhere, greedily lower the layer (to any lower candidate) that saves the most
   weight bits per point of predicted drop, while the predicted drop (the sum of the layers' own drops, negative
   ones counted as 0) stays within the budget.
3. Verification: the combined model is measured; while its real drop exceeds the budget the last (costliest)
   choices are undone. In the worst case everything is undone and the model stays fp32, so the budget always
   holds on the validation split. Optional QAT afterwards keeps the best val epoch, so it cannot break it.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Technique, register_technique
from squeezeflow.compression.qat import qat_loss
from squeezeflow.compression.quantize import FP32, Bits, QuantOptions, quant_metrics, quantize_model, targets
from squeezeflow.config import TrainParams
from squeezeflow.models.graph import get_module
from squeezeflow.training import accuracy

Plan = dict[str, int]  # layer path -> bits; layers not in it stay fp32
Move = tuple[str, int, int]  # (layer path, bits before, bits after)
EPS = 1e-9  # accuracy differences are float sums: a drop equal to the budget is within it


class MixedPrecisionConfig(QuantOptions):
    candidates: tuple[Bits, ...] = Field((8, 4, 2, 1), description="bit widths a layer may get")
    max_accuracy_drop: float = Field(1.0, ge=0, le=100, description="points of val accuracy the model may lose")
    qat: TrainParams | None = Field(None, description="quantization-aware training after the choice; null = none")
    distill_alpha: float = Field(0.0, ge=0, le=1, description="teacher soft-target weight during that QAT")
    temperature: float = Field(4.0, gt=0, le=100)

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("at least one candidate bit width is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"candidate bit widths repeat: {list(v)}")
        return tuple(sorted(v, reverse=True))


class Evaluator:
    """Val accuracy drop of the model quantized by a plan, vs the model as given."""

    def __init__(self, model: nn.Module, cfg: MixedPrecisionConfig, ctx: CompressContext):
        self.model, self.cfg, self.ctx = model, cfg, ctx
        self.calibration = ctx.train[0][: cfg.calibration_samples]
        self.base = accuracy(model, *ctx.val)

    def build(self, plan: Plan) -> nn.Module:
        return quantize_model(self.model, plan, self.cfg, self.calibration)

    def drop(self, plan: Plan) -> float:
        return self.base - accuracy(self.build(plan), *self.ctx.val)


def sensitivity(ev: Evaluator, layers: list[str], candidates: tuple[int, ...]) -> dict[str, dict[int, float]]:
    return {i: {b: ev.drop({i: b}) for b in candidates} for i in layers}


def greedy_choice(sens: dict[str, dict[int, float]], numel: dict[str, int], budget: float) -> list[Move]:
    """The greedy moves, in the order taken."""
    bits = {i: FP32 for i in sens}
    cost = lambda i, b: 0.0 if b == FP32 else max(sens[i][b], 0.0)  # noqa: E731 (drops below 0 are noise)
    predicted, moves = 0.0, []
    while True:
        best, best_key = None, None
        for i, table in sens.items():
            for b in (b for b in table if b < bits[i]):
                extra = cost(i, b) - cost(i, bits[i])
                if predicted + extra > budget + EPS:
                    continue
                saved = numel[i] * (bits[i] - b)
                key = (saved / extra if extra > 0 else math.inf, saved)
                if best_key is None or key > best_key:
                    best, best_key = (i, b, extra), key
        if best is None:
            return moves
        i, b, extra = best
        moves.append((i, bits[i], b))
        bits[i], predicted = b, predicted + extra


def plan_of(moves: list[Move]) -> Plan:
    plan: Plan = {}
    for i, _, after in moves:
        plan[i] = after
    return plan


def verified(ev: Evaluator, moves: list[Move], budget: float) -> tuple[Plan, float, int]:
    """Undo the latest moves until the measured drop is within budget: (plan, its drop, moves undone)."""
    moves, undone = list(moves), 0
    while True:
        plan = plan_of(moves)
        drop = ev.drop(plan) if plan else 0.0
        if drop <= budget + EPS or not moves:
            return plan, drop, undone
        moves.pop()
        undone += 1


@register_technique
class MixedPrecision(Technique):
    name, kind, Config = "mixed-precision", "quantize", MixedPrecisionConfig
    handles = (nn.Linear, nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: MixedPrecisionConfig = self.config
        ev = Evaluator(model, cfg, ctx)
        layers = targets(model, cfg)
        sens = sensitivity(ev, layers, cfg.candidates)
        moves = greedy_choice(sens, {i: get_module(model, i).weight.numel() for i in layers}, cfg.max_accuracy_drop)
        plan, drop, undone = verified(ev, moves, cfg.max_accuracy_drop)
        out = ev.build(plan)
        metrics = {"sensitivity": {str(i): {str(b): d for b, d in t.items()} for i, t in sens.items()},
                   "predicted_drop": sum(max(sens[i][b], 0.0) for i, b in plan.items()), "measured_drop": drop,
                   "moves_undone": undone}
        if cfg.qat is not None and plan:
            ctx.fit(out, cfg.qat, desc="mixed-precision qat", loss_fn=qat_loss(ctx, cfg.distill_alpha, cfg.temperature))
            metrics["measured_drop_after_qat"] = ev.base - accuracy(out, *ctx.val)
        return Applied(out.eval(), {**quant_metrics(model, plan, out, ctx), **metrics})

"""Unstructured magnitude pruning (technique "prune-magnitude"); the masks that keep pruned weights at zero are in
masks.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn
from torch.nn.utils import prune

from squeezeflow.compression.base import Applied, CompressContext, Selection, Technique, register_technique
from squeezeflow.compression.masks import prunable_weights
from squeezeflow.config import TrainParams


def magnitude_prune(model: nn.Module, sparsity_: float, scope: str = "global", chosen=None) -> None:
    """Zero the smallest-magnitude weights, globally or per layer, and make it permanent (no reparametrisation
    left for export to trip over)."""
    params = prunable_weights(model, chosen)
    if not params:
        raise ValueError("no Linear/Conv1d/Conv2d layer matches the step's include/exclude patterns")
    if sparsity_ <= 0:
        return
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity_)
    else:
        for module, name in params:
            prune.l1_unstructured(module, name, amount=sparsity_)
    for module, name in params:
        prune.remove(module, name)


def sparsity(model: nn.Module) -> float:
    ws = [getattr(m, n).detach() for m, n in prunable_weights(model)]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / total) if total else 0.0


# --- the technique -----------------------------------------------------------------------------------------------


class MagnitudePruneConfig(Selection):
    sparsity: float = Field(0.5, ge=0, lt=1, description="fraction of Linear/Conv weights set to zero")
    scope: Literal["global", "layer"] = "global"
    steps: int = Field(1, ge=1, le=100, description="1 = one-shot; more = iterative, sparsity rising linearly")
    finetune: TrainParams | None = Field(None, description="training between iterative steps (pruned weights stay 0)")


def schedule(target: float, steps: int) -> list[float]:
    return [target * (i + 1) / steps for i in range(steps)]


@register_technique
class MagnitudePrune(Technique):
    """Unstructured magnitude pruning, one-shot or iterative. The zeros are permanent (no torch reparametrisation
    is left for export) and every later training step keeps them at zero."""

    name, kind, Config = "prune-magnitude", "sparsify", MagnitudePruneConfig
    handles = (nn.Linear, nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: MagnitudePruneConfig = self.config
        levels = schedule(cfg.sparsity, cfg.steps)
        for i, level in enumerate(levels):
            # the amount is a fraction of all weights; zeros from earlier steps are the smallest, so they stay pruned
            magnitude_prune(model, level, cfg.scope, lambda p: cfg.chooses(model, p))
            if cfg.finetune and i < len(levels) - 1:
                ctx.fit(model, cfg.finetune, desc=f"prune {level:.0%}")
        return Applied(model, {"sparsity": sparsity(model), "steps": cfg.steps})

"""Structured pruning: remove whole output channels (Conv) or neurons (Linear), so the model really shrinks.

Torch-Pruning's dependency graph (DepGraph) finds every tensor a channel touches in any nn.Module: the layer's own
weight rows and bias, BatchNorm/LayerNorm parameters and statistics, the next layers' input columns (through
Flatten, residual adds, concatenation, depthwise/grouped convolutions, attention projections), and removes them
together, so the pruned model computes what the original did without those channels. One implementation for the
built-in Sequential models and the user's own. The layer producing the model's output (the classifier) never loses
outputs.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch_pruning as tp
from pydantic import Field, model_validator
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Selection, Technique, register_technique
from squeezeflow.config import TrainParams
from squeezeflow.models import count_parameters
from squeezeflow.models.graph import output_layer

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

Importance = Literal["l1", "l2", "bn"]
Scope = Literal["layer", "global"]


class PruneChannelsConfig(Selection):
    amount: float = Field(0.5, ge=0, lt=1, description="fraction of channels/neurons removed")
    importance: Importance = Field("l1", description="l1/l2 norm of a channel group's weights, or |gamma| of its "
                                                     "BatchNorm")
    scope: Scope = Field("layer", description="the same fraction from each layer, or globally by normalised score")
    min_channels: int = Field(1, ge=1, description="a layer that would keep fewer outputs is left alone")
    steps: int = Field(1, ge=1, le=100, description="prune in this many equal increments up to amount")
    finetune: TrainParams | None = Field(None, description="training between steps (needs steps > 1)")

    @model_validator(mode="after")
    def _finetune_needs_steps(self) -> PruneChannelsConfig:
        # fine-tuning runs *between* steps; with one step it would silently do nothing
        if self.finetune is not None and self.steps < 2:
            raise ValueError("finetune runs between pruning steps, so it needs steps >= 2; to fine-tune after "
                             "one-shot pruning add a training step after this one")
        return self


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Outputs of every Linear/Conv, by path."""
    return {p: _out_channels(m) for p, m in model.named_modules() if p and isinstance(m, WEIGHTED)}


def _importance(name: Importance, model: nn.Module):
    if name == "bn":
        if not any(isinstance(m, NORMS) for m in model.modules()):
            raise ValueError("importance 'bn' needs BatchNorm layers and the model has none; use 'l1' or 'l2'")
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _ignored(model: nn.Module, example: torch.Tensor, cfg: PruneChannelsConfig) -> list[nn.Module]:
    """Layers whose outputs stay: the classifier, those the patterns leave out, those too narrow to prune."""
    last = output_layer(model, example)
    out = []
    for p, m in model.named_modules():
        if not p or not isinstance(m, WEIGHTED):
            continue
        kept = _out_channels(m) - math.floor(cfg.amount * _out_channels(m) + 1e-9)
        if p == last or not cfg.chooses(model, p) or kept < cfg.min_channels:
            out.append(m)
    return out


def pruner(model: nn.Module, example: torch.Tensor, cfg: PruneChannelsConfig) -> tp.pruner.BasePruner:
    """Torch-Pruning's pruner for `cfg` on `model` (traced on `example`); each .step() prunes one increment."""
    return tp.pruner.BasePruner(
        model, example, importance=_importance(cfg.importance, model), pruning_ratio=cfg.amount,
        iterative_steps=cfg.steps, global_pruning=cfg.scope == "global", ignored_layers=_ignored(model, example, cfg))


def prune_channels(model: nn.Module, example: torch.Tensor, amount: float, importance: Importance = "l1") -> nn.Module:
    """One-shot structured pruning of a copy of `model` (the distill technique's students of user models)."""
    model = copy.deepcopy(model).eval()
    pruner(model, example, PruneChannelsConfig(amount=amount, importance=importance)).step()
    return model


@register_technique
class PruneChannels(Technique):
    """Remove the least important channels/neurons of every hidden layer, optionally in steps with fine-tuning."""

    name = "prune-channels"
    kind = "structure"
    Config = PruneChannelsConfig
    config: PruneChannelsConfig

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg = self.config
        model = copy.deepcopy(model).eval()  # the caller's model (often the teacher) stays as it was
        example = ctx.example()
        before, params_before, fits = channel_counts(model), count_parameters(model), []
        prune = pruner(model, example, cfg)
        for step in range(1, cfg.steps + 1):
            prune.step()
            ctx.log(f"prune-channels step {step}/{cfg.steps}: {count_parameters(model):,} parameters")
            if step < cfg.steps and cfg.finetune is not None:
                fits.append(ctx.fit(model, cfg.finetune, desc=f"prune-channels finetune {step}/{cfg.steps - 1}"))
                model.eval()
        metrics = {"channels_before": before, "channels_kept": channel_counts(model),
                   "params_before": params_before, "params_after": count_parameters(model),
                   "param_ratio": count_parameters(model) / max(params_before, 1), "engine": "torch-pruning"}
        if fits:
            metrics |= {"finetune_steps": len(fits), "finetune_best_val_accuracy": fits[-1].best_val_accuracy}
        return Applied(model.eval(), metrics)

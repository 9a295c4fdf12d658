"""The weights pruning zeroes and the masks that keep them at zero while a compressed model trains (below both the
technique base, whose `fit` applies them, and the pruning technique)."""

from __future__ import annotations

import torch
from torch import nn


def prunable_weights(model: nn.Module, chosen=None) -> list[tuple[nn.Module, str]]:
    """Weights of Linear and Conv layers (those whose path `chosen` accepts); biases stay dense (few values, large
    effect)."""
    return [(m, "weight") for p, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and (chosen is None or chosen(p))]


def weight_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, mask of its nonzeros): fine-tuning keeps pruned weights at zero."""
    return [(getattr(m, n), getattr(m, n).detach() != 0) for m, n in prunable_weights(model)]


def apply_masks(masks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for w, mask in masks:
            w.mul_(mask)

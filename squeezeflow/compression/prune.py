from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Weights of Linear and Conv layers; biases stay dense (few values, large effect)."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def magnitude_prune(model: nn.Module, sparsity_: float, scope: str = "global") -> None:
    """Zero the smallest-magnitude weights, globally or per layer, and make it permanent (no reparametrisation
    left for export to trip over)."""
    params = prunable_weights(model)
    if sparsity_ <= 0:
        return
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity_)
    else:
        for module, name in params:
            prune.l1_unstructured(module, name, amount=sparsity_)
    for module, name in params:
        prune.remove(module, name)


def weight_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, mask of its nonzeros): fine-tuning keeps pruned weights at zero."""
    return [(getattr(m, n), getattr(m, n).detach() != 0) for m, n in prunable_weights(model)]


def apply_masks(masks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for w, mask in masks:
            w.mul_(mask)


def sparsity(model: nn.Module) -> float:
    ws = [getattr(m, n).detach() for m, n in prunable_weights(model)]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / total) if total else 0.0

"""Helpers every factorization (SVD in lowrank.py, Tucker/CP in decompose.py) shares."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from squeezeflow.compression.base import TechniqueConfig
from squeezeflow.models import count_parameters
from squeezeflow.models.graph import set_module


def exactly_one(config: TechniqueConfig, a: str, b: str) -> None:
    if (getattr(config, a) is None) == (getattr(config, b) is None):
        raise ValueError(f"give exactly one of '{a}' and '{b}'")


def ratio_rank(ratio: float, full: int) -> int:
    """round(ratio * full), kept within 1..full."""
    return max(1, min(full, round(ratio * full)))


def relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    """||original - approx|| / ||original|| (Frobenius), for the metrics."""
    original = original.detach().double()
    return float((original - approx.detach().double()).norm() / original.norm().clamp_min(1e-30))


def rewrite(model: nn.Module, replace: Callable[[str, nn.Module], list[nn.Module] | None]) -> nn.Module:
    """A copy of `model` in which the layer at each path becomes replace(path, layer) unless that is None: the
    chain of new layers sits where the layer was. In a flat Sequential (the built-in models) the chain is spliced
    in, so the model stays flat. The caller's model (often the teacher) is never changed."""
    out = copy.deepcopy(model)
    flat = type(out) is nn.Sequential and not any(k.startswith("_squeezeflow") for k in vars(out))
    if flat:
        layers: list[nn.Module] = []
        for i, layer in enumerate(out):
            new = replace(str(i), layer)
            layers.extend([layer] if new is None else new)
        return nn.Sequential(*layers).train(model.training)
    for path, layer in [(p, m) for p, m in out.named_modules() if p]:
        new = replace(path, layer)
        if new is not None:
            set_module(out, path, new[0] if len(new) == 1 else nn.Sequential(*new))
    return out.train(model.training)


def param_counts(before: nn.Module, after: nn.Module) -> dict[str, int]:
    return {"params_before": count_parameters(before), "params_after": count_parameters(after)}

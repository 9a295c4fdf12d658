"""Helpers every factorization (SVD in lowrank.py, Tucker/CP in decompose.py) shares."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from squeezeflow.compression.base import TechniqueConfig
from squeezeflow.models import count_parameters


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


def rewrite(model: nn.Sequential, replace: Callable[[int, nn.Module], list[nn.Module] | None]) -> nn.Sequential:
    """A new flat Sequential in which layer i becomes replace(i, layer) unless that is None. Works on a copy, so
    the caller's model (often the teacher) is never changed."""
    layers: list[nn.Module] = []
    for i, layer in enumerate(copy.deepcopy(model)):
        new = replace(i, layer)
        layers.extend([layer] if new is None else new)
    return nn.Sequential(*layers).train(model.training)


def param_counts(before: nn.Module, after: nn.Module) -> dict[str, int]:
    return {"params_before": count_parameters(before), "params_after": count_parameters(after)}

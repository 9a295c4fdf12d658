from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a module: plain values only, so checkpoints load with weights_only."""

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["hidden"] = list(self.input_shape), list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "hidden": tuple(d["hidden"])})


ARCHS: dict[str, Callable[[ModelSpec], nn.Module]] = {}


def register_arch(name: str):
    def add(fn: Callable[[ModelSpec], nn.Module]):
        ARCHS[name] = fn
        return fn

    return add


def build_model(spec: ModelSpec) -> nn.Module:
    if spec.arch not in ARCHS:
        raise KeyError(f"unknown architecture '{spec.arch}'; known: {sorted(ARCHS)}")
    return ARCHS[spec.arch](spec)


@register_arch("mlp")
def mlp(spec: ModelSpec) -> nn.Module:
    """Flatten whatever layout x has, then Linear-ReLU blocks."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(spec.input_shape)
    for h in spec.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        width = h
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)

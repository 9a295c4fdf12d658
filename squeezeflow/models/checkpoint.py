"""Checkpoints: the layer list (what the model is now) + the spec (how it was first built) + the weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from squeezeflow.io import atomic_path
from squeezeflow.models.layers import describe, rebuild
from squeezeflow.models.registry import ModelSpec


def save_checkpoint(path: Path, model: nn.Sequential, spec: ModelSpec) -> None:
    with atomic_path(Path(path)) as tmp:
        torch.save({"spec": spec.to_dict(), "layers": describe(model), "state_dict": model.state_dict()}, tmp)


def load_checkpoint(path: Path) -> tuple[nn.Sequential, ModelSpec]:
    # weights_only: a checkpoint is data, never code.
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = rebuild(blob["layers"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, ModelSpec.from_dict(blob["spec"])

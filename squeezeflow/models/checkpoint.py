from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from squeezeflow.io import atomic_path
from squeezeflow.models.registry import ModelSpec, build_model


def save_checkpoint(path: Path, model: nn.Module, spec: ModelSpec) -> None:
    with atomic_path(Path(path)) as tmp:
        torch.save({"spec": spec.to_dict(), "state_dict": model.state_dict()}, tmp)


def load_checkpoint(path: Path) -> tuple[nn.Module, ModelSpec]:
    # weights_only: a checkpoint is data, never code.
    blob = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec.from_dict(blob["spec"])
    model = build_model(spec)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, spec

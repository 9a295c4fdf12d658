"""Train big: the one way a teacher is trained (the teacher stage and the sweep's teachers both use it)."""

from __future__ import annotations

import numpy as np
from torch import nn

from squeezeflow.config import TrainParams
from squeezeflow.models import ModelSpec, Standardize, build_model, with_input_norm
from squeezeflow.training.loop import FitResult, fit, seed_everything

Split = tuple[np.ndarray, np.ndarray]


def train_model(model: nn.Module, train: Split, val: Split, params: TrainParams, seed: int, normalize: bool = True,
                desc: str = "teacher") -> tuple[nn.Module, FitResult]:
    """Train `model` (its inputs standardized inside it with the train split's statistics when `normalize`) with
    `params`, and return it in eval mode."""
    if normalize and np.issubdtype(train[0].dtype, np.floating):  # never token ids
        model = with_input_norm(model, Standardize.fit(train[0]))
    result = fit(model, train, val, params, seed, desc=desc)
    return model.eval(), result


def train_from_scratch(spec: ModelSpec, train: Split, val: Split, params: TrainParams, seed: int,
                       normalize: bool = True, desc: str = "teacher") -> tuple[nn.Module, FitResult]:
    """Build `spec` with seeded initial weights and train it (train_model)."""
    seed_everything(seed)
    return train_model(build_model(spec), train, val, params, seed, normalize, desc)

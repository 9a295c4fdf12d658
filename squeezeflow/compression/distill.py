from __future__ import annotations

import numpy as np
import torch
from torch import nn

from squeezeflow.config import DistillParams
from squeezeflow.training import FitResult, distillation_loss, fit


def distill(teacher: nn.Module, student: nn.Module, train: tuple[np.ndarray, np.ndarray],
            val: tuple[np.ndarray, np.ndarray], params: DistillParams, seed: int) -> FitResult:
    """Offline distillation: the frozen teacher's logits on each batch are the soft targets."""
    teacher.eval()

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(x)
        return distillation_loss(logits, t, y, params.temperature, params.alpha, params.loss)

    return fit(student, train, val, params.train, seed, desc="distill", loss_fn=loss)

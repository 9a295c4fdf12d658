from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
                      temperature: float, alpha: float, kind: str = "kl") -> torch.Tensor:
    """alpha * soft-target loss + (1 - alpha) * cross-entropy on the labels.

    KL on temperature-softened distributions is scaled by T^2 so its gradients keep their size as T grows
    (Hinton et al., 2015).
    """
    hard = F.cross_entropy(student, y)
    if kind == "kl":
        soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                        reduction="batchmean", log_target=True) * temperature**2
    elif kind == "mse":
        soft = F.mse_loss(student, teacher)
    else:
        raise ValueError(f"unknown distillation loss '{kind}'")
    return alpha * soft + (1 - alpha) * hard

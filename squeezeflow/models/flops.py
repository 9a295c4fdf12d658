"""Size and cost of a model at batch 1: parameters, nonzero parameters and FLOPs (2 x multiply-adds).

FLOPs count dense work: unstructured zeros do not make ONNX Runtime's dense kernels do less, so they are not
subtracted here (the nonzero count shows them); removed channels and smaller factors do shrink FLOPs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    macs = 0

    def linear(m: nn.Linear, _inp, out) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features * (out.numel() // out.shape[-1])

    def conv(m: nn.Module, _inp, out) -> None:
        nonlocal macs
        macs += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    hooks = [m.register_forward_hook(linear if isinstance(m, nn.Linear) else conv)
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return 2 * macs


def count_parameters(model: nn.Module) -> int:
    """Every parameter element (zeros included: see parameter_counts for the nonzero ones)."""
    return parameter_counts(model)["parameters"]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    if hasattr(model, "num_weights"):  # an ONNX file's initializers (models/onnx_model.py)
        total, nonzero = model.num_weights()
        return {"parameters": total, "nonzero_parameters": nonzero}
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "nonzero_parameters": sum(int((p != 0).sum()) for p in model.parameters())}

"""Models as a flat nn.Sequential of layers that can describe themselves as plain dicts.

Compression changes a model's shape (channels removed, a layer split into two factors, weights quantized), so a
checkpoint cannot be rebuilt from the architecture it started as. It stores the list of layer descriptions instead,
and every technique is free to swap layers as long as each one is registered here. Plain values only, so a
checkpoint loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from squeezeflow.rows import chunks

# type name -> (module class, module -> constructor kwargs)
LAYERS: dict[str, tuple[type[nn.Module], Callable[[nn.Module], dict]]] = {}


def register_layer(name: str, cls: type[nn.Module], describe: Callable[[nn.Module], dict] | None = None) -> None:
    """A custom layer may instead define `describe(self) -> dict` returning its constructor kwargs."""
    LAYERS[name] = (cls, describe or (lambda m: m.describe()))


def _conv(m: nn.Module) -> dict:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None}


def _bn(m: nn.Module) -> dict:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum}


def _pool(m: nn.Module) -> dict:
    return {"kernel_size": m.kernel_size, "stride": m.stride}


register_layer("linear", nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                               "bias": m.bias is not None})
register_layer("conv1d", nn.Conv1d, _conv)
register_layer("conv2d", nn.Conv2d, _conv)
register_layer("batchnorm1d", nn.BatchNorm1d, _bn)
register_layer("batchnorm2d", nn.BatchNorm2d, _bn)
register_layer("relu", nn.ReLU, lambda m: {})
register_layer("dropout", nn.Dropout, lambda m: {"p": m.p})
register_layer("flatten", nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim})
register_layer("unflatten", nn.Unflatten, lambda m: {"dim": m.dim, "unflattened_size": list(m.unflattened_size)})
register_layer("maxpool1d", nn.MaxPool1d, _pool)
register_layer("maxpool2d", nn.MaxPool2d, _pool)
register_layer("avgpool1d", nn.AdaptiveAvgPool1d, lambda m: {"output_size": m.output_size})
register_layer("avgpool2d", nn.AdaptiveAvgPool2d, lambda m: {"output_size": m.output_size})


def moments(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of `x` (an array or rows on disk) in float64, a chunk at a time: Chan et al.'s
    pairwise update, exact like numpy's two-pass result up to rounding."""
    n, mean, m2 = 0, np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
    for part in chunks(x):
        part = part.astype(np.float64)
        k, pm = len(part), part.mean(axis=0)
        delta = pm - mean
        m2 += ((part - pm) ** 2).sum(axis=0) + delta**2 * n * k / (n + k)
        mean, n = mean + delta * k / (n + k), n + k
    return mean, np.sqrt(m2 / max(n, 1))


class Standardize(nn.Module):
    """(x - mean) / std per input feature, with the train split's statistics as buffers: the deployed model (and
    its ONNX: Sub, Div) takes raw inputs exactly as the user's data has them. ONNX Runtime's int8 quantizer leaves
    Sub and Div in float, so calibration and quantization see the normalized activations."""

    def __init__(self, shape: tuple[int, ...] | list[int]):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("std", torch.ones(self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def describe(self) -> dict:
        return {"shape": list(self.shape)}

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardize:
        """Statistics in float64 (raw values may be large); a constant feature keeps std 1 (it becomes 0)."""
        mean, std = moments(x)
        std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        layer = cls(x.shape[1:])
        layer.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        layer.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        return layer


register_layer("standardize", Standardize)


def input_norm(model: nn.Module) -> Standardize | None:
    flat = type(model) is nn.Sequential and len(model)
    return model[0] if flat and isinstance(model[0], Standardize) else None


def with_input_norm(model: nn.Module, norm: Standardize | None) -> nn.Module:
    """The model behind a copy of `norm` (a student inherits its teacher's input statistics). A built-in flat
    Sequential stays flat; any other module (the user's, built by a factory) becomes Sequential(norm, model)."""
    if norm is None or input_norm(model) is not None:
        return model
    if type(model) is nn.Sequential and not any(k.startswith("_squeezeflow") for k in vars(model)):
        return nn.Sequential(copy.deepcopy(norm), *model)
    return nn.Sequential(copy.deepcopy(norm), model)


def _type_name(module: nn.Module) -> str:
    # exact class match: a subclass (e.g. a quantized Linear) must register under its own name
    for name, (cls, _) in LAYERS.items():
        if type(module) is cls:
            return name
    raise TypeError(f"layer {type(module).__name__} is not registered in squeezeflow.models.layers")


def describe(model: nn.Sequential) -> list[dict]:
    out = []
    for m in model:
        name = _type_name(m)
        out.append({"type": name, **LAYERS[name][1](m)})
    return out


def rebuild(layers: list[dict]) -> nn.Sequential:
    modules = []
    for d in layers:
        kwargs = dict(d)
        name = kwargs.pop("type")
        if name not in LAYERS:
            raise KeyError(f"unknown layer type '{name}'; known: {sorted(LAYERS)}")
        for k in ("kernel_size", "stride", "padding", "dilation", "unflattened_size"):
            if isinstance(kwargs.get(k), list):
                kwargs[k] = tuple(kwargs[k])
        modules.append(LAYERS[name][0](**kwargs))
    return nn.Sequential(*modules)

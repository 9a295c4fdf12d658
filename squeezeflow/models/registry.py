from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from torch import nn

from squeezeflow.imports import import_ref
from squeezeflow.rows import sample


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a module: plain values only, so checkpoints load with weights_only."""

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)
    input_dtype: str = "float32"  # or "int64": token ids / category indices the model embeds

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["hidden"] = list(self.input_shape), list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "hidden": tuple(d["hidden"])})

    def scaled(self, scale: float) -> ModelSpec:
        """The same architecture with every hidden width times `scale` (at least 1): a teacher of another size."""
        return ModelSpec(self.arch, self.input_shape, self.num_classes,
                         tuple(max(1, round(h * scale)) for h in self.hidden), self.dropout, dict(self.extra),
                         self.input_dtype)


ARCHS: dict[str, Callable[[ModelSpec], nn.Module]] = {}


def register_arch(name: str):
    def add(fn: Callable[[ModelSpec], nn.Module]):
        ARCHS[name] = fn
        return fn

    return add


FLAT_ARCHS = {"mlp", "cnn"}  # a flat Sequential of registered layers: a checkpoint describes it layer by layer
SOURCE_ATTR = "_squeezeflow_spec"  # set on every other module build_model makes

# A teacher's size when params.yaml names no hidden sizes: channels per block (cnn), widths (mlp).
DEFAULT_HIDDEN: dict[str, tuple[int, ...]] = {"cnn": (128, 256, 256), "mlp": (512, 512)}


def choose_arch(x: np.ndarray) -> str:
    """'auto': a CNN where neighbouring inputs belong together (images; 1-D signals), an MLP for tabular features.
    A 1-D input counts as a signal when neighbouring features correlate at least twice as strongly as features do
    on average (measured: signals 3.2-3.9x, tabular data 1.15-1.3x); convolutions over a tabular file's column
    order cost 3-6 points on held-out data (benchmarks/RESULTS.md)."""
    if x.ndim > 2:
        return "cnn"
    if x.shape[1] < 8:
        return "mlp"
    z = sample(x, 20_000).astype(np.float64)  # a correlation matrix needs every value at once: a sample of rows
    z = z[:, z.std(0) > 0]
    if z.shape[1] < 8:
        return "mlp"
    c = np.abs(np.corrcoef(z, rowvar=False))
    d = c.shape[0]
    neighbours = float(np.mean(np.diagonal(c, 1)))
    average = float((c.sum() - d) / (d * d - d))
    return "cnn" if neighbours >= 2 * average else "mlp"


def resolve_arch(arch: str, hidden: tuple[int, ...] | None, x_train: np.ndarray) -> tuple[str, tuple[int, ...]]:
    """'auto' becomes the architecture `choose_arch` picks; no hidden sizes, that architecture's default."""
    arch = choose_arch(x_train) if arch == "auto" else arch
    return arch, tuple(hidden) if hidden else DEFAULT_HIDDEN.get(arch, (64,))


def build_model(spec: ModelSpec) -> nn.Module:
    """The module `spec` describes. One that is not a flat Sequential of registered layers remembers its spec, so a
    checkpoint can rebuild it after compression changed it (models/tree.py)."""
    if spec.arch not in ARCHS:
        raise KeyError(f"unknown architecture '{spec.arch}'; known: {sorted(ARCHS)}")
    model = ARCHS[spec.arch](spec)
    if spec.arch not in FLAT_ARCHS:
        setattr(model, SOURCE_ATTR, spec.to_dict())
    return model


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


@register_arch("cnn")
def cnn(spec: ModelSpec) -> nn.Module:
    """Conv-BN-ReLU blocks (hidden = channels per block; blocks after the first halve the resolution), then one
    Linear. 1-D inputs (L,) use Conv1d, 2-D inputs (H, W) and 3-D inputs (C, H, W) use Conv2d.
    extra: kernel (3)."""
    shape, k = spec.input_shape, int(spec.extra.get("kernel", 3))
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"cnn needs an input of 1 to 3 dimensions, got {shape}")
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if len(shape) == 1 else (nn.Conv2d, nn.BatchNorm2d)
    layers: list[nn.Module] = []
    if len(shape) < 3:
        layers.append(nn.Unflatten(1, (1, shape[0])))  # (N, L) or (N, H, W) gains a channel axis
    channels, size = (shape[0] if len(shape) == 3 else 1), list(shape[-2:] if len(shape) > 1 else shape)
    for i, c in enumerate(spec.hidden):
        stride = 2 if i > 0 and min(size) >= 4 else 1
        layers += [conv(channels, c, k, stride=stride, padding=k // 2, bias=False), bn(c), nn.ReLU()]
        size = [(s + 2 * (k // 2) - k) // stride + 1 for s in size]
        channels = c
    layers.append(nn.Flatten())
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(channels * math.prod(size), spec.num_classes))
    return nn.Sequential(*layers)


# --- the user's own model ----------------------------------------------------------------------------------------


def _inject(fn, kwargs: dict, spec: ModelSpec) -> dict:
    """Pass num_classes / input_shape / in_channels when the factory takes them and kwargs do not set them."""
    import inspect

    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return kwargs
    offered = {"num_classes": spec.num_classes, "input_shape": tuple(spec.input_shape),
               "in_channels": spec.input_shape[0] if len(spec.input_shape) == 3 else 1}
    return {**{k: v for k, v in offered.items() if k in names and k not in kwargs}, **kwargs}


@register_arch("python")
def python_factory(spec: ModelSpec) -> nn.Module:
    """A user's factory (extra: factory 'module:function', kwargs). It must return an nn.Module."""
    fn = import_ref(str(spec.extra["factory"]))
    kwargs = _inject(fn, dict(spec.extra.get("kwargs") or {}), spec)
    try:
        model = fn(**kwargs)
    except Exception as exc:
        raise ValueError(f"{spec.extra['factory']}(**{kwargs}) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec.extra['factory']} returned {type(model).__name__}, not a torch.nn.Module")
    return model


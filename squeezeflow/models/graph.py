"""Modules addressed by their path in any nn.Module tree (`layer3.1.conv2`, or `3` in a flat Sequential), and
chosen with include/exclude patterns, so every technique works on a user's ResNet or transformer as on the built-in
Sequential models."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn

from squeezeflow.models.layers import Standardize

COMPUTE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def get_module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at `path` (replacing what is there, or adding it as a new child)."""
    parent, _, name = path.rpartition(".")
    get_module(model, parent).add_module(name, module)


def user_path(model: nn.Module, path: str) -> str:
    """The path as the user's own model names it: without the `1.` of the Sequential(Standardize, net) wrapper."""
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], Standardize) \
            and path.startswith("1.") and not isinstance(model[1], COMPUTE):
        return path[2:]
    return path


def model_path(model: nn.Module, path: str) -> str:
    """The inverse of user_path: a path in the user's model -> its path in `model` (through the wrapper)."""
    wrapped = isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], Standardize) \
        and not isinstance(model[1], COMPUTE) and not path.isdigit()
    return f"1.{path}" if wrapped else path


def matches(path: str, include: Iterable[str] | None, exclude: Iterable[str] = ()) -> bool:
    """fnmatch patterns (`layer3.*`, `*.attn.*`): included (all when `include` is empty) and not excluded."""
    inc = list(include or ())
    return (not inc or any(fnmatch.fnmatchcase(path, p) for p in inc)) and \
        not any(fnmatch.fnmatchcase(path, p) for p in exclude)


def modules_of(model: nn.Module, types: tuple[type, ...], exact: bool = True) -> list[tuple[str, nn.Module]]:
    """(path, module) of every module of these types, in model order (exact type: a quantized Linear is not a
    Linear here unless exact=False)."""
    return [(p, m) for p, m in model.named_modules() if p and (type(m) in types if exact else isinstance(m, types))]


def output_layer(model: nn.Module, example) -> str | None:
    """The path of the compute layer that produces the model's output (the classifier): the last Linear/Conv to
    run in a forward pass of `example`."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda _m, _i, _o, p=p: order.append(p))
             for p, m in model.named_modules() if p and isinstance(m, COMPUTE)]
    was = model.training
    try:
        model.eval()
        import torch

        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return order[-1] if order else None

"""Any model as plain data, so a compressed model rebuilds from a checkpoint loaded with weights_only.

A node is one of:
- a registered layer: `{"type": "conv2d", **constructor kwargs}` (models/layers.py);
- `{"type": "sequential", "layers": [node, ...]}`;
- `{"type": "source", "spec": ModelSpec, "patches": [...]}`: a module `build_model(spec)` makes (the user's factory),
  then changed the way compression changed it. Each patch names a path: `module` (a node put there: a quantized or
  factorized layer), or `attrs` (plain attributes that differ from a fresh build: channel and head counts that
  structured pruning rewrote in place).
Tensor shapes come from the state dict: before loading it, every parameter or buffer whose shape differs is
resized (structured pruning shrinks them in place).
"""

from __future__ import annotations

import torch
from torch import nn

from squeezeflow.models.graph import get_module, set_module
from squeezeflow.models.layers import LAYERS, _type_name
from squeezeflow.models.registry import SOURCE_ATTR, ModelSpec, build_model

SCALARS = (int, float, bool, str, type(None))


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, SCALARS) for v in value)
    return isinstance(value, SCALARS)


def _attrs(module: nn.Module) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(module).items()
            if k != "training" and _plain(v)}


def describe_tree(module: nn.Module, path: str = "") -> dict:
    spec = getattr(module, SOURCE_ATTR, None)
    if spec is not None:
        return {"type": "source", "spec": spec, "patches": _patches(module, build_model(ModelSpec.from_dict(spec)))}
    if type(module) is nn.Sequential:
        return {"type": "sequential", "layers": [describe_tree(m, f"{path}.{i}".lstrip(".")) for i, m in
                                                 enumerate(module)]}
    try:
        name = _type_name(module)
    except TypeError:
        raise TypeError(f"module '{path or '<root>'}' ({type(module).__name__}) was not built by the model's "
                        "factory and is not a registered layer: a checkpoint cannot rebuild it") from None
    return {"type": name, **LAYERS[name][1](module)}


def _patches(model: nn.Module, fresh: nn.Module, prefix: str = "") -> list[dict]:
    """What makes `fresh` into `model`, parents before children."""
    out: list[dict] = []
    if prefix == "" and _attrs(model) != _attrs(fresh):
        out.append({"path": "", "attrs": _changed(model, fresh)})
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        was = fresh._modules.get(name)
        if was is None or type(was) is not type(child) or hasattr(child, SOURCE_ATTR):
            out.append({"path": path, "module": describe_tree(child, path)})
            continue
        if _attrs(child) != _attrs(was):
            out.append({"path": path, "attrs": _changed(child, was)})
        out += _patches(child, was, f"{path}.")
    return out


def _changed(module: nn.Module, fresh: nn.Module) -> dict:
    now, before = _attrs(module), _attrs(fresh)
    return {k: v for k, v in now.items() if before.get(k, object()) != v}


def rebuild_tree(node: dict) -> nn.Module:
    kind = node["type"]
    if kind == "sequential":
        return nn.Sequential(*[rebuild_tree(n) for n in node["layers"]])
    if kind == "source":
        model = build_model(ModelSpec.from_dict(node["spec"]))
        for patch in node["patches"]:
            if "module" in patch:
                set_module(model, patch["path"], rebuild_tree(patch["module"]))
            else:
                target = get_module(model, patch["path"])
                for k, v in patch["attrs"].items():
                    setattr(target, k, tuple(v) if isinstance(v, list) else v)
        return model
    if kind not in LAYERS:
        raise KeyError(f"unknown layer type '{kind}'; known: {sorted(LAYERS)}")
    kwargs = {k: v for k, v in node.items() if k != "type"}
    for k in ("kernel_size", "stride", "padding", "dilation", "unflattened_size"):
        if isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    return LAYERS[kind][0](**kwargs)


def load_resized(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """load_state_dict (strict), after giving every tensor the shape the state dict has."""
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        module = get_module(model, owner)
        current = module._parameters.get(name, None) if name in module._parameters else module._buffers.get(name)
        if current is None or current.shape == value.shape:
            continue
        fresh = torch.empty(value.shape, dtype=current.dtype)
        if name in module._parameters:
            module._parameters[name] = nn.Parameter(fresh, requires_grad=current.requires_grad)
        else:
            module._buffers[name] = fresh
    model.load_state_dict(state)


def rebuild_model(node: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    model = rebuild_tree(node)
    load_resized(model, state)
    return model


__all__ = ["describe_tree", "load_resized", "rebuild_model", "rebuild_tree", "set_module"]

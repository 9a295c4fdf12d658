"""The user's own model: built by their factory, loaded from their checkpoint, checked against the data before any
training. Every problem is one SqueezeflowInputError naming the params file, the field and the value."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from squeezeflow.config import FactorySource, OnnxSource
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.imports import import_ref
from squeezeflow.io import input_array
from squeezeflow.models.registry import ModelSpec, build_model


def python_spec(source: FactorySource, input_shape: tuple[int, ...], num_classes: int,
                input_dtype: str = "float32") -> ModelSpec:
    return ModelSpec("python", tuple(input_shape), int(num_classes), input_dtype=input_dtype,
                     extra={"factory": source.factory_ref(), "kwargs": source.factory_kwargs()})


def build_user_model(spec: ModelSpec, where: str, field: str = "teacher.source.factory",
                     value: str | None = None) -> nn.Module:
    try:
        return build_model(spec)
    except ValueError as exc:
        raise SqueezeflowInputError(where, field, value or spec.extra.get("factory"), str(exc)) from None


def check_factory(source: FactorySource, where: str) -> None:
    """Importable and callable: checked before any work (Workspace.validate)."""
    try:
        import_ref(source.factory_ref())
    except ValueError as exc:
        raise SqueezeflowInputError(where, source.factory_field, source.factory_value(), str(exc)) from None


def load_state(model: nn.Module, checkpoint: str | Path, where: str,
               field: str = "teacher.source.checkpoint") -> None:
    """A plain state dict (or {'state_dict': ...}), loaded with weights_only: data, never code."""
    path = Path(checkpoint)
    if not path.is_file():
        raise SqueezeflowInputError(where, field, str(path), "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise SqueezeflowInputError(where, field, str(path), f"not a readable state dict ({first[:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SqueezeflowInputError(where, field, str(path), "expected a state dict (torch.save(model.state_dict()))")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"shape of {shapes[0]}: model {tuple(own[shapes[0]].shape)}, file {tuple(state[shapes[0]].shape)}"
                 if shapes else ""]
        raise SqueezeflowInputError(where, field, str(path), "its keys do not match the factory's model: "
                                    + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def check_output(model: nn.Module, x: np.ndarray, num_classes: int, where: str,
                 field: str = "teacher.source.factory", value: str = "") -> None:
    """One forward pass of two samples: the model must take the data's layout and give one logit per class."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(input_array(x[:2])))
    except Exception as exc:
        raise SqueezeflowInputError(where, field, value, f"the model cannot run on the data's samples of shape "
                                    f"{tuple(x.shape[1:])}: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SqueezeflowInputError(where, field, value, f"the model's output is {got} for 2 samples; the dataset "
                                    f"has {num_classes} classes, so it must be (2, {num_classes})")


def onnx_spec(source: OnnxSource, input_shape: tuple[int, ...], num_classes: int, input_dtype: str) -> ModelSpec:
    return ModelSpec("onnx", tuple(input_shape), int(num_classes), input_dtype=input_dtype,
                     extra={"path": str(Path(source.path).resolve())})


def check_onnx_teacher(source: OnnxSource, x: np.ndarray, num_classes: int, where: str) -> nn.Module:
    """The file loads in ONNX Runtime and gives one logit per class on two samples of the data."""
    path = Path(source.path)
    if not path.is_file():
        raise SqueezeflowInputError(where, "teacher.source.path", source.path, "no such file")
    try:
        model = build_model(onnx_spec(source, tuple(x.shape[1:]), num_classes, str(input_array(x[:1]).dtype)))
        model._session()
    except Exception as exc:  # protobuf, ONNX Runtime: all mean "not a model it can run"
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise SqueezeflowInputError(where, "teacher.source.path", source.path, "not an ONNX model ONNX Runtime "
                                    f"can load ({first[:160]})") from None
    check_output(model, x, num_classes, where, "teacher.source.path", source.path)
    return model


def check_user_model(source: FactorySource, x: np.ndarray, num_classes: int, where: str) -> nn.Module:
    """Everything about the user's model that can be wrong, checked on two samples before any work: the factory
    imports and returns an nn.Module, the checkpoint matches it, and it gives one logit per class."""
    spec = python_spec(source, tuple(x.shape[1:]), num_classes, str(input_array(x[:1]).dtype))
    model = build_user_model(spec, where, source.factory_field, source.factory_value())
    if source.checkpoint:
        load_state(model, source.checkpoint, where)
    check_output(model, x, num_classes, where, source.factory_field, source.factory_value())
    return model

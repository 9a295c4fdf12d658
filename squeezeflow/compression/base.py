"""What every compression technique is: a registered class with its own typed config, applied to a model.

A recipe (squeezeflow/compression/recipe.py) is an ordered list of technique steps. Steps are ordered by kind,
because some orders cannot work: a new student discards whatever was done to the model before it; channels
cannot be removed from a quantized layer; unstructured zeros do not survive a factorization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from squeezeflow.io import input_array
from squeezeflow.models import ModelSpec
from squeezeflow.models.graph import matches, user_path

Kind = Literal["student", "structure", "sparsify", "quantize", "train"]
# steps must come in this order; "train" steps (fine-tuning) may come anywhere
KIND_ORDER: dict[str, int] = {"student": 0, "structure": 1, "sparsify": 2, "quantize": 3}


class TechniqueConfig(BaseModel):
    """Base of every technique's config: unknown keys are an error, values are validated on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def recipe_problems(self) -> list[tuple[str, Any, str]]:
        """(field, value, problem) for settings that validate alone but cannot work in the lifecycle; a recipe
        refuses them on load. Each technique's config declares its own."""
        return []


class Selection(TechniqueConfig):
    """Which modules a technique touches, by path in the user's model (`layer3.1.conv2`; in a built-in flat model
    the layer index): fnmatch patterns, e.g. include ['layer3.*', 'layer4.*'], exclude ['*.downsample.*']."""

    include: tuple[str, ...] = Field((), description="module path patterns to compress; empty: every module the "
                                     "technique handles")
    exclude: tuple[str, ...] = Field((), description="module path patterns left alone")

    def chooses(self, model: nn.Module, path: str) -> bool:
        return matches(user_path(model, path), self.include, self.exclude)


@dataclass
class CompressContext:
    """What a technique may use besides the model: the trained teacher, the data and the seed."""

    teacher: nn.Sequential
    teacher_spec: ModelSpec
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    seed: int
    log: Callable[[str], None] = print
    cache: Path | None = None  # where a frozen teacher's outputs on the train split are kept (teacher_outputs.py)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.teacher_spec.input_shape

    def example(self, n: int = 2):
        """A few training samples as a tensor: what graph tracing (Torch-Pruning, the output layer) runs on."""
        import torch

        return torch.as_tensor(input_array(self.train[0][:n]))

    @property
    def num_classes(self) -> int:
        return self.teacher_spec.num_classes

    def fit(self, model: nn.Module, params, desc: str, loss_fn=None, stop_at: float | None = None):
        """Supervised (or custom-loss) training that keeps pruned weights at exactly zero (`stop_at`: see
        training.fit)."""
        from squeezeflow.compression.masks import apply_masks, weight_masks
        from squeezeflow.compression.teacher_outputs import teacher_logits
        from squeezeflow.training import fit, predict_logits

        masks = weight_masks(model)
        teacher = getattr(loss_fn, "teacher", None)  # a frozen teacher: its outputs once per sample (kd_loss_fn)
        cached = (None if teacher is None else
                  teacher_logits(teacher, self.train[0], self.cache, predict_logits, self.log))
        return fit(model, self.train, self.val, params, self.seed, desc=desc, loss_fn=loss_fn,
                   after_step=lambda: apply_masks(masks), teacher_logits=cached, stop_at=stop_at)


@dataclass
class Applied:
    model: nn.Sequential
    metrics: dict = field(default_factory=dict)
    spec: ModelSpec | None = None  # set by techniques that build a new model (a student)


class Technique:
    name: ClassVar[str]
    kind: ClassVar[Kind]
    Config: ClassVar[type[TechniqueConfig]]
    handles: ClassVar[tuple[type, ...]] = ()  # the module types a Selection technique compresses

    def __init__(self, config: TechniqueConfig):
        self.config = config

    def check(self, model: nn.Module) -> None:
        """Before any training: every `include` pattern must reach a module this technique handles. One that
        reaches only modules it cannot handle (a user's custom layer holding its own weights) or nothing at all is
        a ValueError naming the pattern, the module's path and type, and what the technique supports."""
        cfg = self.config
        if not isinstance(cfg, Selection) or not self.handles or not cfg.include:
            return
        supported = ", ".join(t.__name__ for t in self.handles)
        paths = {user_path(model, p): m for p, m in model.named_modules() if p}
        for pattern in cfg.include:
            hit = {p: m for p, m in paths.items() if matches(p, [pattern], cfg.exclude)}
            if any(type(m) in self.handles for m in hit.values()):
                continue
            own = [(p, m) for p, m in hit.items() if next(m.parameters(recurse=False), None) is not None]
            if own:
                p, m = own[0]
                raise ValueError(f"include '{pattern}' reaches module '{p}' of type {type(m).__name__}, which "
                                 f"{self.name} cannot handle (it supports {supported}); exclude it or choose "
                                 "another technique for it")
            near = [p for p, m in paths.items() if type(m) in self.handles][:4]
            raise ValueError(f"include '{pattern}' matches no module {self.name} handles ({supported}); such "
                             f"modules are at {near or 'no path'}")

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        raise NotImplementedError


TECHNIQUES: dict[str, type[Technique]] = {}


def register_technique(cls: type[Technique]) -> type[Technique]:
    for attr in ("name", "kind", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"technique {cls.__name__} must define '{attr}'")
    TECHNIQUES[cls.name] = cls
    return cls

"""What every compression technique is: a registered class with its own typed config, applied to a model.

A recipe (squeezeflow/compression/recipe.py) is an ordered list of technique steps. Steps are ordered by kind,
because some orders cannot work: a new student discards whatever was done to the model before it; channels
cannot be removed from a quantized layer; unstructured zeros do not survive a factorization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from torch import nn

from squeezeflow.models import ModelSpec

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


@dataclass
class CompressContext:
    """What a technique may use besides the model: the trained teacher, the data and the seed."""

    teacher: nn.Sequential
    teacher_spec: ModelSpec
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    seed: int
    log: Callable[[str], None] = print

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.teacher_spec.input_shape

    @property
    def num_classes(self) -> int:
        return self.teacher_spec.num_classes

    def fit(self, model: nn.Module, params, desc: str, loss_fn=None):
        """Supervised (or custom-loss) training that keeps pruned weights at exactly zero."""
        from squeezeflow.compression.prune import apply_masks, weight_masks
        from squeezeflow.training import fit

        masks = weight_masks(model)
        return fit(model, self.train, self.val, params, self.seed, desc=desc, loss_fn=loss_fn,
                   after_step=lambda: apply_masks(masks))


@dataclass
class Applied:
    model: nn.Sequential
    metrics: dict = field(default_factory=dict)
    spec: ModelSpec | None = None  # set by techniques that build a new model (a student)


class Technique:
    name: ClassVar[str]
    kind: ClassVar[Kind]
    Config: ClassVar[type[TechniqueConfig]]

    def __init__(self, config: TechniqueConfig):
        self.config = config

    def apply(self, model: nn.Sequential, ctx: CompressContext) -> Applied:
        raise NotImplementedError


TECHNIQUES: dict[str, type[Technique]] = {}


def register_technique(cls: type[Technique]) -> type[Technique]:
    for attr in ("name", "kind", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"technique {cls.__name__} must define '{attr}'")
    TECHNIQUES[cls.name] = cls
    return cls

"""Recipes: a YAML file naming an ordered list of technique steps, plus the recovery fine-tuning.

    name: default
    description: distil into a small CNN, remove channels, quantize weights to 4 bits
    steps:
      - technique: distill
        student: {arch: cnn, hidden: [8, 16]}
      - technique: prune-channels
        amount: 0.25
    finetune: {train: {epochs: 30}}   # run by the `finetuned` stage; null skips it

Everything is validated on load, before any work: unknown techniques and keys, out-of-range values and
impossible orders are errors naming the file, the field and the value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression.base import KIND_ORDER, TECHNIQUES, Applied, CompressContext, Technique
from squeezeflow.compression.finetune import Finetune, FinetuneConfig
from squeezeflow.config import yaml_problem
from squeezeflow.errors import SqueezeflowInputError, from_pydantic

TOP_LEVEL = {"name", "description", "steps", "finetune"}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    steps: tuple[Technique, ...]
    finetune: FinetuneConfig | None
    source: str

    def to_dict(self) -> dict:
        """The resolved recipe (defaults filled in): what DVC compares and MLflow records."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [{"technique": s.name, **s.config.model_dump(mode="json")} for s in self.steps],
            "finetune": self.finetune.model_dump(mode="json") if self.finetune else None,
        }

    def run(self, model: nn.Sequential, ctx: CompressContext,
            on_step: Callable[[Applied], dict] | None = None) -> tuple[nn.Sequential, Any, list[dict]]:
        """Apply the steps in order; returns the model, its spec (the last student's, else the teacher's) and the
        metrics of each step (plus whatever `on_step` measures after it)."""
        spec, report = ctx.teacher_spec, []
        model = copy.deepcopy(model)  # in-place steps (pruning, fine-tuning) must never touch the caller's teacher
        for i, step in enumerate(self.steps):
            ctx.log(f"[recipe {self.name}] step {i + 1}/{len(self.steps)}: {step.name}")
            try:
                applied = step.apply(model, ctx)
            except ValueError as exc:  # the step does not fit this model (e.g. BN importance without BatchNorm)
                raise SqueezeflowInputError(self.source, f"steps[{i}].technique", step.name, str(exc)) from exc
            model, spec = applied.model, applied.spec or spec
            report.append({"step": i + 1, "technique": step.name, **applied.metrics,
                           **(on_step(applied) if on_step else {})})
        return model, spec, report

    def check_model(self, model: nn.Module) -> None:
        """Each step's module selection against the user's model, before any training (Technique.check)."""
        from squeezeflow.models.onnx_model import is_onnx_teacher

        if is_onnx_teacher(model) and self.steps and self.steps[0].name != "distill":
            raise SqueezeflowInputError(self.source, "steps[0].technique", self.steps[0].name, "an ONNX teacher is "
                                        "not a torch model: the first step must be `distill` into a student "
                                        "(student.arch or student.factory), or `steps: []` to build the file for "
                                        "the targets as it is")
        for i, step in enumerate(self.steps):
            try:
                step.check(model)
            except ValueError as exc:
                raise SqueezeflowInputError(self.source, f"steps[{i}].include", list(step.config.include),
                                            str(exc)) from None

    def recover(self, model: nn.Sequential, ctx: CompressContext) -> dict:
        if self.finetune is None or not any(p.requires_grad for p in model.parameters()):
            return {"epochs": 0}  # nothing to recover, or nothing trainable (an ONNX teacher deployed as it is)
        return Finetune(self.finetune).apply(model, ctx).metrics


def parse_recipe(data: Any, source: str | Path, default_name: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise SqueezeflowInputError(source, "<root>", data, "a recipe is a mapping with 'steps'")
    unknown = sorted(set(data) - TOP_LEVEL)
    if unknown:
        raise SqueezeflowInputError(source, unknown[0], data[unknown[0]],
                                    f"unknown recipe key; known: {sorted(TOP_LEVEL)}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):  # [] deploys the teacher as it is (the builds still quantize it)
        raise SqueezeflowInputError(source, "steps", raw_steps, "expected a list of technique steps ([]: the "
                                    "teacher as it is)")
    steps = tuple(_parse_step(s, i, source) for i, s in enumerate(raw_steps))
    _check_order(steps, source)
    _check_exportable(steps, source)
    finetune = _parse_finetune(data.get("finetune", {}), source)
    name = data.get("name") or default_name
    return Recipe(str(name), str(data.get("description") or ""), steps, finetune, str(source))


def _parse_step(raw: Any, i: int, source: str | Path) -> Technique:
    where = f"steps[{i}]"
    if not isinstance(raw, dict) or "technique" not in raw:
        raise SqueezeflowInputError(source, where, raw, "each step is a mapping with a 'technique' key")
    name, params = raw["technique"], {k: v for k, v in raw.items() if k != "technique"}
    if not isinstance(name, str) or name not in TECHNIQUES:
        raise SqueezeflowInputError(source, f"{where}.technique", name,
                                    f"unknown technique; known: {sorted(TECHNIQUES)}")
    cls = TECHNIQUES[name]
    try:
        return cls(cls.Config.model_validate(params))
    except ValidationError as exc:
        raise from_pydantic(source, exc, prefix=f"{where}.") from None


def _parse_finetune(raw: Any, source: str | Path) -> FinetuneConfig | None:
    if raw is None:
        return None
    try:
        return FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_pydantic(source, exc, prefix="finetune.") from None


def _check_order(steps: tuple[Technique, ...], source: str | Path) -> None:
    """student -> structure -> sparsify -> quantize; fine-tuning anywhere; at most one quantize step."""
    highest, quantized = -1, None
    for i, step in enumerate(steps):
        if step.kind == "quantize":
            if quantized is not None:
                raise SqueezeflowInputError(source, f"steps[{i}].technique", step.name,
                                            f"the model is already quantized by steps[{quantized}]; "
                                            "use one quantize step")
            quantized = i
        rank = KIND_ORDER.get(step.kind)
        if rank is None:
            continue
        if rank < highest:
            before = next(s for s in steps[:i] if KIND_ORDER.get(s.kind) == highest)
            raise SqueezeflowInputError(source, f"steps[{i}].technique", step.name,
                                        f"a '{step.kind}' step cannot follow a '{before.kind}' step ({before.name}); "
                                        "the order is student -> structure -> sparsify -> quantize")
        highest = rank


def _check_exportable(steps: tuple[Technique, ...], source: str | Path) -> None:
    """Each technique's config says what cannot work in the lifecycle (TechniqueConfig.recipe_problems)."""
    for i, step in enumerate(steps):
        for field, value, problem in step.config.recipe_problems():
            raise SqueezeflowInputError(source, f"steps[{i}].{field}", value, problem)


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise SqueezeflowInputError(path, "<file>", str(path), "no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SqueezeflowInputError(path, "<root>", None, f"not valid YAML: {yaml_problem(exc)}") from None
    return parse_recipe(data, path, default_name=path.stem)


def find_recipe(name: str, search: list[Path]) -> Path:
    """A recipe by name (recipes/<name>.yaml in the first folder that has it) or by path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return Path(name)
    for folder in search:
        candidate = Path(folder) / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in search if Path(folder).is_dir() for p in Path(folder).glob("*.yaml")})
    raise SqueezeflowInputError("params.yaml", "compress.recipe", name, f"no such recipe; known: {known}")

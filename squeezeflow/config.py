"""Typed pipeline parameters: the contents of params.yaml, validated on load (unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from squeezeflow.errors import SqueezeflowInputError, from_pydantic


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(Strict):
    name: str = "digits"
    path: str | None = Field(None, description="the .npz file, when name is 'npz'")
    value_range: tuple[float, float] | None = Field(None, description="expected [min, max] of x")
    num_classes: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _path_for_npz(self) -> "DatasetParams":
        if self.name == "npz" and not self.path:
            raise ValueError("dataset 'npz' needs dataset.path to name the .npz file")
        return self


class SplitParams(Strict):
    val: float = Field(0.15, gt=0, lt=0.5)
    test: float = Field(0.2, gt=0, lt=0.5)


class TrainParams(Strict):
    epochs: int = Field(60, ge=1, le=10_000)
    patience: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(1e-4, ge=0)


class TeacherParams(Strict):
    arch: str = "mlp"
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = Field(0.1, ge=0, lt=1)
    train: TrainParams = TrainParams()


class DistillParams(Strict):
    student_hidden: tuple[int, ...] = (64,)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss")
    loss: Literal["kl", "mse"] = "kl"
    train: TrainParams = TrainParams(epochs=150, patience=15, lr=3e-3)


class PruneParams(Strict):
    sparsity: float = Field(0.5, ge=0, lt=1)
    scope: Literal["global", "layer"] = "global"


class CompressParams(Strict):
    distill: DistillParams = DistillParams()
    prune: PruneParams = PruneParams()


class FinetuneParams(Strict):
    train: TrainParams = TrainParams(epochs=30, patience=6, lr=1e-3, weight_decay=0.0)


class ExportParams(Strict):
    opset: int = Field(17, ge=13, le=23)
    parity_atol: float = Field(1e-4, gt=0)


class RegistryParams(Strict):
    model_prefix: str = Field("squeezeflow", pattern=r"^[A-Za-z0-9_.-]+$")


class Params(Strict):
    seed: int = Field(0, ge=0)
    dataset: DatasetParams = DatasetParams()
    split: SplitParams = SplitParams()
    teacher: TeacherParams = TeacherParams()
    compress: CompressParams = CompressParams()
    finetune: FinetuneParams = FinetuneParams()
    export: ExportParams = ExportParams()
    registry: RegistryParams = RegistryParams()


def parse_params(data: Any, source: str | Path) -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SqueezeflowInputError(source, "<root>", data, "expected a mapping of parameters")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(source, exc) from None


def load_params(path: Path) -> Params:
    path = Path(path)
    if not path.exists():
        return Params()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SqueezeflowInputError(path, "<root>", None, f"not valid YAML: {exc}") from None
    return parse_params(data, path)


def parse_override(item: str) -> tuple[str, Any]:
    """'teacher.train.epochs=5' -> ('teacher.train.epochs', 5); the value is read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SqueezeflowInputError("--set", "<override>", item, "expected KEY=VALUE, e.g. seed=1")
    return key.strip(), yaml.safe_load(raw) if raw != "" else None


def apply_overrides(params: Params, overrides: dict[str, Any], source: str = "run config") -> Params:
    """Set dotted keys (like `dvc exp run -S`), then re-validate the whole thing."""
    data = params.model_dump(mode="json")
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise SqueezeflowInputError(source, dotted, value, f"unknown parameter section '{part}'")
            node = node[part]
        if leaf not in node:
            raise SqueezeflowInputError(source, dotted, value, "unknown parameter")
        node[leaf] = value
    return parse_params(data, source)

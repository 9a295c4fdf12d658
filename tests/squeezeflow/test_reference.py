"""The field reference in docs/reference: what the models render, and every field of the three models in it (walked
here from the pydantic models themselves, not from the schema the pages are rendered from)."""

import types
import typing

import pytest
from pydantic import BaseModel

from squeezeflow.reference import DOCS, render
from squeezeflow.yaml_schemas import KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_the_shipped_reference_is_what_the_models_render(kind):
    assert (DOCS / f"{kind}.md").read_text() == render(kind), \
        "stale reference: regenerate with `.venv/bin/python -m squeezeflow.reference`"


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through X | None, Annotated, unions, lists, tuples)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def field_paths(model: type[BaseModel], prefix: str = "", skip: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        if name == skip:
            continue
        path = f"{prefix}{name}"
        out.add(path)
        many = typing.get_origin(info.annotation) is list
        for sub in _models(info.annotation):
            out |= field_paths(sub, f"{path}{'[]' if many else ''}.", skip="technique" if many else "")
    return out


def every_field(kind: str) -> set[str]:
    from squeezeflow.compression import TECHNIQUES
    from squeezeflow.compression.finetune import FinetuneConfig
    from squeezeflow.config import Params
    from squeezeflow.runtimes.base import load_builders
    from squeezeflow.targets import TargetProfile

    if kind == "params":
        return field_paths(Params)
    if kind == "target":
        paths = field_paths(TargetProfile) | {"build.builder"}
        for builder in load_builders().values():
            paths |= field_paths(builder.Config, "build.")
        return paths
    paths = {"name", "description", "steps", "steps[].technique"} | field_paths(FinetuneConfig, "finetune.")
    for technique in TECHNIQUES.values():
        paths |= field_paths(technique.Config, "steps[].", skip="technique")
    return paths


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_of_the_model_is_in_the_reference(kind):
    page = (DOCS / f"{kind}.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in page.splitlines() if line.startswith("| `")}
    expected = every_field(kind)
    assert len(expected) > 20
    assert sorted(expected - rows) == []

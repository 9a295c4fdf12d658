"""JSON Schemas for the three YAML kinds (params.yaml, a device target, a recipe), generated from the pydantic models
that validate them, so an editor (yaml-language-server) flags a wrong field before a run does. The shipped files in
squeezeflow/schemas/ are checked against what this generates (tests/squeezeflow/test_yaml_schemas.py); regenerate with

    .venv/bin/python -m squeezeflow.yaml_schemas
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

SCHEMA_DIR = Path(__file__).parent / "schemas"
KINDS = ("params", "target", "recipe")
HEADER = "# yaml-language-server: $schema="  # the first line of a shipped YAML file: its schema, for editors


def with_schema(text: str, kind: str) -> str:
    """A YAML file's text whose first line points at this installation's schema (a copy outside the repository,
    where the shipped relative path would not resolve)."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith(HEADER):
        lines = lines[1:]
    return f"{HEADER}{SCHEMA_DIR / f'{kind}.schema.json'}\n" + "".join(lines)


def _tagged(configs: dict[str, type[BaseModel]], tag: str, suffix: str):
    """One model per registered name, its `tag` field fixed to that name: a union an editor can tell apart."""
    variants = [create_model(f"{cls.__name__}{suffix}", __base__=cls, **{tag: (Literal[name], ...)})
                for name, cls in sorted(configs.items())]
    return Annotated[Union[tuple(variants)], Field(discriminator=tag)]  # noqa: UP007 (a runtime-built union)


def _target_model() -> type[BaseModel]:
    from squeezeflow.runtimes.base import load_builders
    from squeezeflow.targets import TargetProfile

    builders = {name: cls.Config for name, cls in load_builders().items()}
    return create_model("TargetProfile", __base__=TargetProfile, build=(_tagged(builders, "builder", ""), ...))


def _recipe_model() -> type[BaseModel]:
    from squeezeflow.compression import TECHNIQUES
    from squeezeflow.compression.finetune import FinetuneConfig

    steps = _tagged({name: cls.Config for name, cls in TECHNIQUES.items()}, "technique", "Step")
    return create_model("Recipe", __config__=ConfigDict(extra="forbid"),
                        name=(str | None, Field(None, description="defaults to the file name")),
                        description=(str | None, None),
                        steps=(list[steps], Field(description="technique steps in order; []: the teacher as it is")),
                        finetune=(FinetuneConfig | None, Field(FinetuneConfig(), description="the recovery "
                                                               "fine-tuning after the steps; null skips it")))


def schema(kind: str) -> dict:
    from squeezeflow.config import Params

    model = {"params": lambda: Params, "target": _target_model, "recipe": _recipe_model}[kind]()
    out = model.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = {"params": "squeezeflow params.yaml", "target": "squeezeflow device target",
                    "recipe": "squeezeflow recipe"}[kind]
    return out


def text(kind: str) -> str:
    return json.dumps(schema(kind), indent=1, sort_keys=True) + "\n"


def main() -> None:
    from squeezeflow.io import write_text

    for kind in KINDS:
        write_text(SCHEMA_DIR / f"{kind}.schema.json", text(kind))
        print(SCHEMA_DIR / f"{kind}.schema.json")


if __name__ == "__main__":
    main()

"""JSON Schemas for params.yaml, device targets and recipes: generated from the pydantic models, shipped, referenced
from the shipped files, and strict enough that an editor flags what a run would refuse."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from squeezeflow.yaml_schemas import HEADER, KINDS, SCHEMA_DIR, text
from tests.conftest import PROJECT

SHIPPED = {"params": [PROJECT / "params.yaml"],
           "target": sorted((PROJECT / "device_targets").glob("*.yaml")),
           "recipe": sorted((PROJECT / "recipes").glob("*.yaml"))}
EXAMPLES = {"params": sorted(PROJECT.glob("examples/*/params.yaml")),
            "target": sorted(PROJECT.glob("examples/*/device_targets/*.yaml")),
            "recipe": sorted(PROJECT.glob("examples/*/recipes/*.yaml"))}


def validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("kind", KINDS)
def test_the_shipped_schema_is_what_the_models_generate(kind):
    assert (SCHEMA_DIR / f"{kind}.schema.json").read_text() == text(kind), \
        "stale schema: regenerate with `.venv/bin/python -m squeezeflow.yaml_schemas`"


@pytest.mark.parametrize("kind,path", [(k, p) for k in KINDS for p in SHIPPED[k] + EXAMPLES[k]],
                         ids=lambda v: v if isinstance(v, str) else str(v.relative_to(PROJECT)))
def test_every_shipped_yaml_is_valid_under_its_schema(kind, path):
    errors = [f"{list(e.path)}: {e.message}" for e in validator(kind).iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("kind,path", [(k, p) for k in KINDS for p in SHIPPED[k]],
                         ids=lambda v: v if isinstance(v, str) else str(v.relative_to(PROJECT)))
def test_every_shipped_yaml_names_its_schema_for_editors(kind, path):
    first = path.read_text().splitlines()[0]
    assert first.startswith(HEADER)
    assert (path.parent / first.removeprefix(HEADER)).resolve() == (SCHEMA_DIR / f"{kind}.schema.json").resolve()


def _broken(kind: str) -> list[tuple[dict, str]]:
    """(a shipped file with one mistake, the path its error must point at)."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    target = yaml.safe_load((PROJECT / "device_targets" / "cpu-int8.yaml").read_text())
    recipe = yaml.safe_load((PROJECT / "recipes" / "default.yaml").read_text())
    cases = {
        "params": [({**params, "teacher": {**params["teacher"], "epochs": 3}}, "teacher"),  # belongs in train
                   ({**params, "split": {"val": "lots", "test": 0.2}}, "split/val")],
        "target": [({**target, "budgets": {**target["budgets"], "max_acuracy_drop": 1.0}}, "budgets"),
                   ({**target, "build": {**target["build"], "per_channel": "yes"}}, "build"),
                   ({**target, "build": {"builder": "ort-int8-qdq", "precision": "fp16"}}, "build")],  # TensorRT's
        "recipe": [({**recipe, "steps": [{**recipe["steps"][0], "temprature": 4.0}]}, "steps/0"),
                   ({**recipe, "steps": [{"technique": "prune-everything"}]}, "steps/0"),
                   ({**recipe, "steps": [{**recipe["steps"][1], "bits": 3.5}]}, "steps/0")],
    }
    return [(copy.deepcopy(d), where) for d, where in cases[kind]]


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_copy_is_flagged_where_the_mistake_is(kind):
    v = validator(kind)
    for data, where in _broken(kind):
        errors = list(v.iter_errors(data))
        assert errors, (kind, where)
        paths = {"/".join(str(p) for p in e.absolute_path) for e in errors}
        assert any(p.startswith(where) for p in paths), (where, paths)


def test_a_schema_file_per_kind_and_nothing_else():
    assert sorted(p.name for p in Path(SCHEMA_DIR).iterdir()) == sorted(f"{k}.schema.json" for k in KINDS)

"""One lineage schema: every MLflow tag squeezeflow writes or reads is named in squeezeflow/tracking/schema.py, and
spelled out nowhere else in the project (writers and readers import it)."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from squeezeflow.tracking import schema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "squeezeflow" / "tracking" / "schema.py"


def _is_module(text: str) -> bool:
    """`squeezeflow.stages`, `squeezeflow.gates.compare:compare_task`: code references, not tags."""
    try:
        return importlib.util.find_spec(text.split(":")[0].rstrip(".")) is not None
    except (ImportError, ValueError):
        return False


NAME = re.compile(r"(?<![\w.])(squeezeflow\.(?:[A-Za-z0-9_]+\.?)*|mlflow\.(?:[A-Za-z_]+\.?)+)")


def _docstrings(tree) -> set[int]:
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def tag_literals(path: Path) -> list[str]:
    """Tag names inside string constants (f-string parts and search filters included; docstrings not): a
    `squeezeflow.<x>` that is not a module, the bare prefix `squeezeflow.`, or MLflow's own `mlflow.<x>` tags."""
    tree = ast.parse(path.read_text())
    skip, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for text in NAME.findall(node.value):
                if text == "squeezeflow." or not (_is_module(text) or text.rstrip(".") in ("mlflow.db", "squeezeflow")):
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    found.append(f"{where}:{node.lineno}: {text!r}")
    return found


def test_tag_names_are_spelled_out_in_the_schema_module_only():
    files = [f for package in ("squeezeflow", "assets", "pipelines") for f in (ROOT / package).rglob("*.py")
             if f != SCHEMA]
    assert [hit for f in files for hit in tag_literals(f)] == []


def test_the_scan_finds_a_tag_written_out_elsewhere(tmp_path):
    module = tmp_path / "writer.py"
    module.write_text('TAGS = {"squeezeflow.gate": "passed"}\n'
                      'def key(stage):\n    return f"squeezeflow.dvc.{stage}"\n'
                      'PARENT = "mlflow.parentRunId"\nCODE = "squeezeflow.stages.teacher"\n'
                      'WHERE = "tags.`squeezeflow.release` = \'pending\'"\n')
    assert sorted(hit.split(": ", 1)[1] for hit in tag_literals(module)) == [
        "'mlflow.parentRunId'", "'squeezeflow.dvc.'", "'squeezeflow.gate'", "'squeezeflow.release'"]


def test_the_schema_names_each_tag_once():
    tags = {k: v for k, v in vars(schema).items() if k.endswith("_TAG")}
    assert len(set(tags.values())) == len(tags)
    assert all(v.startswith(("squeezeflow.", "mlflow.")) for v in tags.values())

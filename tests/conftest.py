"""Shared fixtures: every test works in its own temp workspace (a real DVC repo with a local remote), with a
SQLite MLflow store and a Dagster instance inside it. Nothing touches the project's own state."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]

# Small enough that a whole lifecycle runs in seconds; the behaviour under test is the same.
TINY = {
    "teacher": {"arch": "mlp", "hidden": [64], "train": {"epochs": 6, "patience": 3}},
    "compress": {"recipe": "tiny"},
    # The dynamo exporter costs ~4 s per process and ~1 s per export; the end-to-end tests on users' models
    # (tests/pipelines/test_byo.py, test_tokens.py, test_huggingface.py, ...) and tests/squeezeflow/export use it.
    "export": {"exporter": "torchscript"},
    # The sweep at x1 only: its points are the main line's own stages, so a test workspace's graph holds no sweep
    # teachers it never trains (tests/pipelines/test_lifecycle.py sweeps more sizes by flags).
    "sweep": {"teacher_scales": [1.0], "recipes": ["tiny"]},
}
TINY_RECIPE = {
    "name": "tiny",
    "steps": [
        {"technique": "distill", "student": {"arch": "mlp", "hidden": [16]}, "train": {"epochs": 6, "patience": 3}},
        {"technique": "prune-magnitude", "sparsity": 0.5},
    ],
    "finetune": {"train": {"epochs": 2, "patience": 2}},
}


def write_target(directory: Path, name: str, builder: str = "ort-fp32", **budgets) -> Path:
    spec = {
        "name": name,
        "build": {"builder": builder, **({"calibration_samples": 64} if builder == "ort-int8-qdq" else {})},
        "measure": {"threads": 1, "warmup": 2, "iterations": 20, "throughput_batch": 32, "throughput_seconds": 0.05},
        # Room for the tiny recipe (it drops ~15-20 points from its 64-unit teacher, in ~6 kB and ~0.05 ms), not for
        # anything: a 2x larger drop, a 1000x slower or a 300x bigger model fails. Regression thresholds: defaults.
        "budgets": {"max_accuracy_drop": 40.0, "max_latency_p95_ms": 50.0, "max_model_bytes": 2_000_000, **budgets},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def make_workspace(root: Path, params: dict | None = None, targets: tuple[str, ...] = ("cpu-fp32", "cpu-int8")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "device_targets").mkdir()
    for t in targets:
        write_target(root / "device_targets", t, builder="ort-int8-qdq" if "int8" in t else "ort-fp32")
    (root / "params.yaml").write_text(yaml.safe_dump(params if params is not None else TINY))
    (root / "recipes").mkdir()
    (root / "recipes" / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE, sort_keys=False))
    return root


def two_recipe_target(root: Path) -> dict:
    """The workspace's only target `edge`, choosing the smaller of two candidate recipes: `tiny` and `tiny-wide`
    (its student 24 units wide, not 16). Returns tiny-wide as written to recipes/."""
    for t in (root / "device_targets").iterdir():
        t.unlink()
    (root / "params.yaml").write_text(yaml.safe_dump({**TINY, "sweep": {**TINY["sweep"], "target": "edge"}}))
    target = write_target(root / "device_targets", "edge")
    target.write_text(target.read_text() + "recipes: [tiny, tiny-wide]\nobjective: smallest\n")
    wide = {**TINY_RECIPE, "name": "tiny-wide", "steps": [
        {**TINY_RECIPE["steps"][0], "student": {"arch": "mlp", "hidden": [24]}}, TINY_RECIPE["steps"][1]]}
    (root / "recipes" / "tiny-wide.yaml").write_text(yaml.safe_dump(wide, sort_keys=False))
    return wide


@contextlib.contextmanager
def lifecycle_env(base: Path):
    """For module-scoped fixtures: a Dagster home and DVC site cache under `base`, MLflow in the workspace."""
    with pytest.MonkeyPatch.context() as mp:
        (base / "dagster_home").mkdir()
        (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        mp.setenv("DAGSTER_HOME", str(base / "dagster_home"))
        mp.setenv("DVC_SITE_CACHE_DIR", str(base / "dvc_site"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield base


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc_site"))
    return tmp_path


@pytest.fixture
def workspace(isolated_env) -> Path:
    return make_workspace(isolated_env / "ws")


@pytest.fixture
def digits_npz(tmp_path) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(path, x=(d.images / 16.0).astype(np.float32), y=d.target.astype(np.int64))
    return path


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT


def copy_targets(dest: Path) -> None:
    shutil.copytree(PROJECT / "device_targets", dest, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory) -> Path:
    """Creating an MLflow SQLite store runs its migrations (seconds): do it once, copy it per test."""
    from squeezeflow.tracking import Tracker

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    Tracker(f"sqlite:///{path}")
    return path


@pytest.fixture
def tracker(tmp_path, _migrated_mlflow_db):
    """A real MLflow tracking store and registry (SQLite) in this test's temp folder."""
    from squeezeflow.tracking import Tracker

    shutil.copyfile(_migrated_mlflow_db, tmp_path / "mlflow.db")
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "artifacts")

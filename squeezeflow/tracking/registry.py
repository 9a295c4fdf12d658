"""Registering validated models and moving the `champion` alias, only behind a passed gate."""

from __future__ import annotations

import os
from contextlib import contextmanager

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from squeezeflow.io import sha256_file
from squeezeflow.tracking.tracker import Tracker

CHAMPION = "champion"
SHA_TAG = "squeezeflow.onnx_sha256"


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    model_uri: str
    promoted: bool
    reused: bool  # the champion already was this exact file: no new version registered

    def to_dict(self) -> dict:
        return asdict(self)


def champion(tracker: Tracker, model_name: str):
    """The model version the `champion` alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def _ensure_registered_model(tracker: Tracker, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.get_registered_model(name)
    except MlflowException:
        tracker.client.create_registered_model(name, description=description)


@contextmanager
def fluent_uri(uri: str):
    """log_model only exists in MLflow's fluent API, whose set_tracking_uri also writes MLFLOW_TRACKING_URI into
    os.environ: without restoring it, every later workspace in this process would log into this one's store."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def promote(tracker: Tracker, run_id: str, model_name: str, onnx_path: Path, example: np.ndarray,
            tags: dict[str, str]) -> Promotion:
    """Log the ONNX model (flavor + signature), register it and point `champion` at it.

    Callers promote only after the gate passed. If the champion already is this very file, nothing new is
    registered: a re-run with nothing changed leaves the registry as it was.
    """
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    sha = sha256_file(onnx_path)
    current = champion(tracker, model_name)
    if current is not None and current.tags.get(SHA_TAG) == sha:
        return Promotion(model_name, current.version, f"models:/{model_name}/{current.version}", True, True)
    from squeezeflow.export.onnx import onnx_logits

    signature = infer_signature(example.astype(np.float32), onnx_logits(onnx_path, example))
    with fluent_uri(tracker.tracking_uri):  # registration resolves the logged model through the same global URI
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", signature=signature,
                                         onnx_execution_providers=["CPUExecutionProvider"])
        _ensure_registered_model(tracker, model_name, "squeezeflow: the validated model for one hardware target")
        version = tracker.client.create_model_version(model_name, source=info.model_uri, run_id=run_id,
                                                      tags={**tags, SHA_TAG: sha})
    tracker.client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return Promotion(model_name, version.version, f"models:/{model_name}/{version.version}", True, False)

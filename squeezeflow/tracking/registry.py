"""The MLflow model registry: every validated candidate becomes a version carrying its gate verdict; aliases say
which version is deployed (`champion`) or waits for a person (`challenger`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from squeezeflow.io import sha256_file
from squeezeflow.shims import swapped
from squeezeflow.tracking.schema import COMPANIONS_TAG, SHA_TAG
from squeezeflow.tracking.tracker import Tracker

CHAMPION, CHALLENGER = "champion", "challenger"


def version_by_alias(tracker: Tracker, model_name: str, alias: str):
    """The model version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion(tracker: Tracker, model_name: str):
    return version_by_alias(tracker, model_name, CHAMPION)


def get_version(tracker: Tracker, model_name: str, version: str | int):
    """The model version, or None when the model or the version does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version(model_name, str(version))
    except MlflowException:
        return None


def versions(tracker: Tracker, model_name: str) -> list:
    return sorted(tracker.client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version))


def version_with_sha(tracker: Tracker, model_name: str, sha: str):
    """The newest version holding exactly this ONNX file, or None."""
    same = [v for v in versions(tracker, model_name) if v.tags.get(SHA_TAG) == sha]
    return same[-1] if same else None


def _ensure_registered_model(tracker: Tracker, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.get_registered_model(name)
    except MlflowException:
        try:
            tracker.client.create_registered_model(name, description=description)
        except MlflowException:  # created meanwhile by a concurrent registration
            tracker.client.get_registered_model(name)


@contextmanager
def fluent_uri(uri: str):
    """log_model only exists in MLflow's fluent API, whose set_tracking_uri also writes MLFLOW_TRACKING_URI into
    os.environ: without restoring it, every later workspace in this process would log into this one's store."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    # the unset state itself, not get_*_uri()'s resolved default: set back, that default (./mlflow.db) would
    # become every later client's registry, whatever tracking URI it is given
    before = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = before
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v




def register(tracker: Tracker, run_id: str, model_name: str, onnx_path: Path, example: np.ndarray,
             tags: dict[str, str], description: str = "", session_options: dict | None = None,
             companions: list[Path] = ()):
    """Log the ONNX model (flavor + signature) under `run_id` and register it as a new version; no alias moves.
    `session_options` (MLflow's `onnx_session_options`): how the target was validated, so a user's default
    `mlflow.pyfunc.load_model` runs the model the same way."""
    import json

    import mlflow
    import mlflow.utils.environment
    import onnx
    from mlflow.models import infer_signature

    from squeezeflow.io import input_array
    from squeezeflow.onnxio import onnx_logits

    recorded = {}
    for path in companions:  # e.g. a TensorRT engine: what the target really runs, kept beside the ONNX file
        tracker.client.log_artifact(run_id, str(path), "companions")
        recorded[Path(path).name] = {"uri": f"runs:/{run_id}/companions/{Path(path).name}",
                                     "sha256": sha256_file(path)}
    if recorded:
        tags = {**tags, COMPANIONS_TAG: json.dumps(recorded, sort_keys=True)}
    signature = infer_signature(input_array(example), onnx_logits(onnx_path, example))
    # MLflow checks the requirements against this environment, mapping every installed package to its modules
    # first (~1 s a run); ours are this environment's own versions.
    no_check = swapped(mlflow.utils.environment, "warn_dependency_requirement_mismatches", lambda reqs: None)
    with fluent_uri(tracker.tracking_uri):  # registration resolves the logged model through the same global URI
        with mlflow.start_run(run_id=run_id), no_check:
            info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", signature=signature,
                                         onnx_execution_providers=["CPUExecutionProvider"],
                                         onnx_session_options=session_options,
                                         save_as_external_data=False,  # one file, byte-identical to the build
                                         pip_requirements=_requirements())  # inferring them takes seconds

        _ensure_registered_model(tracker, model_name, "squeezeflow: validated models for one hardware target")
        # model_id: an MLflow server accepts a `models:/m-...` source only with the logged model it names
        mv = tracker.client.create_model_version(model_name, source=info.model_uri, run_id=run_id,
                                                 tags={**tags, SHA_TAG: sha256_file(onnx_path)},
                                                 description=description, model_id=info.model_id)
    from squeezeflow import faults

    faults.point("version-created", model_name)
    return get_version(tracker, model_name, mv.version)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"onnx=={version('onnx')}", f"onnxruntime=={version('onnxruntime')}", f"numpy=={version('numpy')}"]


def download_onnx(tracker: Tracker, model_name: str, version: str | int, dest: Path) -> Path:
    """The version's ONNX file, checked against the sha256 recorded at registration (fail closed on a mismatch or
    a version without one)."""
    import mlflow.artifacts

    dest = Path(dest)
    mv = get_version(tracker, model_name, version)
    expected = mv.tags.get(SHA_TAG) if mv is not None else None
    if not expected:  # nothing to check the file against: it is not compared as if it matched
        raise RuntimeError(f"models:/{model_name}/{version} has no recorded sha256 (tag {SHA_TAG}): its file cannot "
                           "be verified (fail closed)")
    with fluent_uri(tracker.tracking_uri), tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=tmp))
        found = sorted(local.rglob("*.onnx"))
        if not found:
            raise RuntimeError(f"models:/{model_name}/{version} holds no .onnx file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], dest)
    if sha256_file(dest) != expected:
        raise RuntimeError(f"models:/{model_name}/{version}: the stored ONNX file does not match its recorded sha256")
    download_companions(tracker, mv, dest)
    return dest


def download_companions(tracker: Tracker, mv, dest: Path) -> list[Path]:
    """The files the version's engine loads beside its model (a TensorRT engine), put beside `dest` under the
    suffix the engine looks for, each checked against its recorded sha256."""
    import json

    import mlflow.artifacts

    out = []
    for name, rec in json.loads(mv.tags.get(COMPANIONS_TAG) or "{}").items():
        target = Path(dest).with_suffix(Path(name).suffix)
        with fluent_uri(tracker.tracking_uri), tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=rec["uri"], dst_path=tmp))
            shutil.copyfile(local, target)
        if sha256_file(target) != rec["sha256"]:
            raise RuntimeError(f"models:/{mv.name}/{mv.version}: its stored {name} does not match its recorded sha256")
        out.append(target)
    return out

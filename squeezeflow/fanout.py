"""One step of a run in a worker's own workspace: how the Celery (and Kubernetes) executors fan a run out.

A worker started with `SQUEEZEFLOW_STEP_ROOT=<folder>` (and `SQUEEZEFLOW_DVC_REMOTE` naming a remote every worker
shares) never runs a step in the run's workspace. For each step:

- **checkout**: the run's definition (params.yaml, device_targets/, recipes/) is copied from the run's workspace
  into the worker's folder; relative paths in params.yaml (the user's data, model code, checkpoint) still point
  into the run's workspace (`Workspace.files_root`), so every worker records the same inputs for DVC;
- **pull**: the step's declared inputs come from the shared remote by the content hash their own steps recorded on
  the run's MLflow parent run (`squeezeflow.dvc.<stage>` tags), whichever worker made them;
- **reuse**: a stage whose command, inputs and params DVC's run cache knows (from any worker, pushed to the remote)
  is restored, not computed;
- **push**: before the step ends its output, its run-cache entry and its timings are on the remote.

Registry moves stay in the Dagster pool `squeezeflow-registry` (one at a time on the shared instance).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

STEP_ROOT_ENV = "SQUEEZEFLOW_STEP_ROOT"
CHECKOUT = ("params.yaml", "device_targets", "recipes")  # what defines a run, beside the user's own files


def step_root() -> Path | None:
    """This worker's own workspace folder, when it runs steps of runs whose workspaces are elsewhere."""
    value = os.environ.get(STEP_ROOT_ENV, "").strip()
    return Path(value).resolve() if value else None


def checkout(source: Path, dest: Path) -> list[str]:
    """Copy the run's definition from its workspace into the worker's, each path replaced whole (a target YAML
    removed there is removed here); returns what was copied. The source must hold params.yaml."""
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if not (source / "params.yaml").is_file():
        raise FileNotFoundError(f"{source / 'params.yaml'}: the run's workspace has no params.yaml (a worker checks "
                                "out the run from the folder the run names)")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for rel in CHECKOUT:
        src, dst = source / rel, dest / rel
        tmp = Path(tempfile.mkdtemp(prefix=f".{rel}.", dir=dest))
        try:
            staged = tmp / rel
            if src.is_dir():
                shutil.copytree(src, staged)
            elif src.is_file():
                shutil.copy2(src, staged)
            else:
                staged = None
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            if staged is not None:
                os.replace(staged, dst)
                copied.append(rel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return copied


def timings_key(stage: str, md5: str) -> str:
    """Where a stage's timings live on the remote: beside its output, keyed by the output's hash."""
    return f"timings/{stage}/{md5}.json"

"""What every part of the lifecycle shares: the workspace, this run's parameters (prepared for DVC), the DVC store,
the MLflow tracker, the registry names."""

from __future__ import annotations

import re
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any

from squeezeflow.config import FILE_DATASETS
from squeezeflow.tracking import Tracker
from squeezeflow.versioning import DvcStore
from squeezeflow.workspace import Workspace

METRICS = "metrics.json"


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_tracking_uri(ws: Workspace) -> str:
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ws.state_dir / 'mlflow.db'}"


def run_dir(ws: Workspace, run_key: str, target: str) -> Path:
    """Where a run keeps a target's gate report and candidate record."""
    return ws.state_dir / "runs" / run_key / target


def safe_name(name: str) -> str:
    """A registry-safe model name from a dataset name or file stem."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return cleaned or "dataset"


class LifecycleBase:
    """One workspace and one run's overrides; the stores are opened on first use."""

    def __init__(self, ws: Workspace, overrides: dict[str, Any] | None = None, tracking_uri: str | None = None,
                 push: bool = True, fanout: bool = False, remote: str | None = None):
        """`fanout`: the workspace is a worker's step workspace (squeezeflow.fanout): inputs are pulled from the
        shared DVC remote (`remote`, default $SQUEEZEFLOW_DVC_REMOTE), outputs and run-cache entries pushed to it,
        the registry recovered inside its pool; MLflow defaults to the run's workspace (`ws.files_root`)."""
        self.ws, self.overrides, self.push, self.fanout = ws, overrides or {}, push, fanout
        self._remote = remote
        self._tracking_uri = tracking_uri
        self.done: set[str] = set()  # stages run or reused by this lifecycle (one run)
        self.committed: set[str] = set()  # stages it ran and committed to DVC
        self._changed: set[str] | None = None  # what `dvc status` reported when first asked
        self._asked_after: set[str] = set()  # the stages committed before that first ask
        self._parents: dict[str, str] = {}  # Dagster run id -> its MLflow parent run

    @cached_property
    def params(self):
        self.ws.state_dir.mkdir(parents=True, exist_ok=True)
        return self.ws.prepare(self.overrides)

    @cached_property
    def dvc(self) -> DvcStore:
        store = DvcStore(self.ws.root, self.ws.state_dir, self._remote)
        if self.fanout and not store.remote_url:
            from squeezeflow.versioning.dvc import REMOTE_ENV

            raise RuntimeError(f"{self.ws.root}: a worker's step workspace needs a DVC remote every worker shares: "
                               f"set {REMOTE_ENV} (a folder, s3://...)")
        store.ensure()
        return store

    @cached_property
    def tracker(self) -> Tracker:
        self.home.state_dir.mkdir(parents=True, exist_ok=True)
        return Tracker(self._tracking_uri or default_tracking_uri(self.home),
                       artifact_location=self.home.state_dir / "mlartifacts")

    @cached_property
    def home(self) -> Workspace:
        """The run's own workspace: MLflow's default store and the registry's lock live there, never in a worker's
        step workspace."""
        return Workspace(self.ws.files_root) if self.fanout else self.ws

    @cached_property
    def notifier(self):
        """Webhook messages per run, target and event (params.yaml `notify`); with params that do not load (the
        failure being reported may be that), the environment's webhook and the defaults."""
        from squeezeflow.config import NotifyParams
        from squeezeflow.notify import Notifier

        try:
            config = self.params.notify
        except Exception:  # noqa: BLE001 - a broken params.yaml must still be reported
            config = NotifyParams()
        return Notifier(config, self.ws.state_dir / "notifications", str(self.ws.root))

    def model_name(self, target: str) -> str:
        """`<prefix>-<registry.model_name>-<target>`; the model name defaults to the dataset's (the .npz file's stem),
        so two datasets never share a champion."""
        reg, ds = self.params.registry, self.params.dataset
        name = reg.model_name or (Path(ds.path).stem if ds.name in FILE_DATASETS and ds.path else
                                  ds.factory.partition(":")[0] if ds.factory else ds.name)
        return f"{reg.model_prefix}-{safe_name(name)}-{target}"

    @property
    def registry_lock(self) -> Path:
        return self.home.state_dir / "locks" / "registry.lock"

    def _run_dir(self, run_key: str, target: str) -> Path:
        return run_dir(self.ws, run_key, target)

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from squeezeflow.tracking.schema import DATASET_CONTEXT_TAG, ERROR_TAG, PARENT_TAG, RUN_KEY_TAG, STAGE_TAG
from squeezeflow.tracking.store import seed_sqlite_store


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _numeric(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@contextmanager
def _store_init_lock(tracking_uri: str):
    """A file lock beside a SQLite store while it is opened for the first time in this process."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f"{db.name}.init.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Tracker:
    """Explicit run ids through MlflowClient: no global active-run state to leak between stages."""

    def __init__(self, tracking_uri: str, experiment: str = "squeezeflow", artifact_location: Path | None = None):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        # The first access creates (or upgrades) a SQLite store; two processes doing it at once corrupt it.
        with _store_init_lock(tracking_uri):
            if tracking_uri.startswith("sqlite:///"):
                seed_sqlite_store(Path(tracking_uri.removeprefix("sqlite:///")))
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = artifact_location.resolve().as_uri() if artifact_location else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                self.experiment_id = exp.experiment_id

    def parent_run(self, run_key: str, params: dict, tags: dict[str, str]) -> str:
        """Find or create the parent run of a pipeline run (every stage asks; the first creates it)."""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' "
                                        f"and tags.`{STAGE_TAG}` = 'pipeline'", max_results=1)
        if found:
            return found[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=f"lifecycle-{run_key[:8]}",
                                     tags={RUN_KEY_TAG: run_key, STAGE_TAG: "pipeline", **tags})
        flat = flatten(params)
        from mlflow.entities import Param

        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])
        return run.info.run_id

    def stage_run(self, parent_id: str, run_key: str, stage: str, metrics: dict, tags: dict[str, str],
                  params: dict | None = None) -> str:
        run = self.client.create_run(self.experiment_id, run_name=stage, tags={
            PARENT_TAG: parent_id, RUN_KEY_TAG: run_key, STAGE_TAG: stage, **tags})
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in _numeric(metrics).items()],
            params=[Param(k, str(v)[:6000]) for k, v in flatten(params or {}).items()],
        )
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict, model_id: str | None = None) -> None:
        """Numeric values at step 0; with `model_id`, linked to that logged model too."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0, model_id=model_id)
                                               for k, v in _numeric(metrics).items()])

    def log_dataset(self, run_id: str, name: str, source: str, x, y, context: str) -> None:
        import warnings

        import mlflow.data
        import mlflow.exceptions
        import numpy as np
        from mlflow.entities import DatasetInput, InputTag

        from squeezeflow.io import batch_rows

        if not isinstance(x, np.ndarray):  # a split read from disk by rows: MLflow's digest and schema from its head
            x = np.asarray(x[: batch_rows(x, 10_000)])
        with warnings.catch_warnings():  # a free-text source ("sklearn.datasets.load_digits") is ambiguous to MLflow
            warnings.simplefilter("ignore", UserWarning)
            try:
                ds = mlflow.data.from_numpy(features=x, targets=y, source=source, name=name)
            except mlflow.exceptions.MlflowException:  # 'pkg.data:load' (a function) reads as an unknown URI scheme
                ds = mlflow.data.from_numpy(features=x, targets=y, source=source.replace(":", "."), name=name)
        self.client.log_inputs(run_id, datasets=[DatasetInput(ds._to_mlflow_entity(),
                                                              tags=[InputTag(DATASET_CONTEXT_TAG, context)])])

    def fail_runs_of(self, run_key: str, why: str) -> list[str]:
        """Mark what a killed pipeline run left behind as FAILED: its runs still RUNNING, and its pipeline run
        (ended after each stage, so it reads FINISHED between stages). Returns their ids."""
        exps = [e.experiment_id for e in self.client.search_experiments()]
        runs = [r for r in self.client.search_runs(exps, filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                                                    max_results=1000)
                if r.info.status == "RUNNING" or r.data.tags.get(STAGE_TAG) == "pipeline"]
        for run in runs:
            self.client.set_tag(run.info.run_id, ERROR_TAG, why[:5000])
            self.client.set_terminated(run.info.run_id, status="FAILED")
        return [r.info.run_id for r in runs]

    def end(self, run_id: str, failed: bool = False) -> None:
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

"""The Dagster code location: `dagster dev -m pipelines.definitions`."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, in_process_executor

from assets import lifecycle_assets
from assets.resources import SqueezeflowResource
from pipelines.jobs import lifecycle_job, sweep_job
from pipelines.promotion import promote, rollback
from pipelines.retention import gc
from pipelines.schedules import weekly_gc, weekly_retrain
from squeezeflow.workspace import Workspace


def build_definitions(root: Path | str | None = None, overrides: dict | None = None, **resource_config) -> Definitions:
    """The stage registry's assets (checks inside them), one chain per YAML file in device_targets/, one per recipe
    (the run's and each candidate a target lists) and one per sweep point; `overrides`: a run's flags over
    params.yaml (its recipe, its sweep), default none."""
    ws = Workspace(root, overrides=overrides)
    return Definitions(
        assets=lifecycle_assets(ws),
        jobs=[lifecycle_job, sweep_job, promote, rollback, gc],
        schedules=[weekly_retrain, weekly_gc],
        # Also for materializations launched from the asset graph: one process per run holds the workspace lock.
        executor=in_process_executor,
        resources={"squeezeflow": SqueezeflowResource(root=str(ws.root), **resource_config)},
    )


defs = build_definitions()

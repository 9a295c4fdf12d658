"""The Dagster code location: `dagster dev -m pipelines.definitions`."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, in_process_executor

from assets import core_assets, core_checks, pareto_sweep, target_assets
from pipelines.jobs import lifecycle_job, sweep_job
from pipelines.promotion import promote, rollback
from pipelines.resources import SqueezeflowResource
from pipelines.schedules import weekly_retrain
from squeezeflow.workspace import Workspace


def build_definitions(root: Path | str | None = None, **resource_config) -> Definitions:
    """One chain of target assets per YAML file in the workspace's device_targets/."""
    ws = Workspace(root)
    assets, checks = [*core_assets, pareto_sweep], list(core_checks)
    for target in ws.targets.values():
        chain, chain_checks = target_assets(target)
        assets += chain
        checks += chain_checks
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[lifecycle_job, sweep_job, promote, rollback],
        schedules=[weekly_retrain],
        # Also for materializations launched from the asset graph: one process per run holds the workspace lock.
        executor=in_process_executor,
        resources={"squeezeflow": SqueezeflowResource(root=str(ws.root), **resource_config)},
    )


defs = build_definitions()

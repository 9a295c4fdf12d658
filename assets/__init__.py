"""The lifecycle's Dagster assets and checks, generated from the stage registry: thin adapters over
squeezeflow.lifecycle."""

from assets.stages import asset_key, stage_assets
from assets.targets import TARGET_STEPS, target_assets

__all__ = ["asset_key", "stage_assets", "TARGET_STEPS", "target_assets", "lifecycle_assets"]


def lifecycle_assets(ws) -> list:
    """Every stage's asset (per-target ones once per profile in device_targets/), then each target's candidate and
    promoted assets."""
    assets = stage_assets(ws.stages, ws.run_key)
    for target in ws.targets.values():
        assets += target_assets(target, ws.stages)
    return assets

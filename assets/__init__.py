"""The lifecycle's Dagster assets and checks: thin adapters over squeezeflow.lifecycle."""

from assets.core import core_assets, core_checks
from assets.sweep import pareto_sweep
from assets.targets import target_assets

__all__ = ["core_assets", "core_checks", "pareto_sweep", "target_assets"]

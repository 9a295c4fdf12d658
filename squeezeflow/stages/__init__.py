"""The lifecycle's checkpoint stages: one module per stage, one registry.

This registry is the single source of truth for what a stage is: dvc.yaml is generated from it
(`squeezeflow dvc-yaml`), the Dagster assets run its stages, and `squeezeflow stage NAME` (the dvc.yaml
command) runs one by hand.
"""

from squeezeflow.stages.base import Stage, StageContext, stage_graph

__all__ = ["Stage", "StageContext", "stage_graph"]

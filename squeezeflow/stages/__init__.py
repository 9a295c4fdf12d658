"""The lifecycle's checkpoint stages: one module per stage, each registering itself (see base.py).

This registry is the single source of truth for what a stage is: dvc.yaml is generated from it
(`squeezeflow dvc-yaml`), the Dagster assets and checks are generated from it, and `squeezeflow stage NAME`
(the dvc.yaml command) runs one by hand. Every module in this package is imported here.
"""

import importlib
import pkgutil

from squeezeflow.stages.base import (
    STAGES,
    Check,
    Stage,
    StageContext,
    Verdict,
    code_version,
    register_stage,
    stage_graph,
    stage_name,
)

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["STAGES", "Check", "Stage", "StageContext", "Verdict", "code_version", "register_stage", "stage_graph",
           "stage_name"]

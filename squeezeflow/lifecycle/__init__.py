"""The lifecycle as callable steps; orchestrators call these, and this package knows nothing about Dagster.

- `stages.py`: run-or-reuse a stage (DVC decides), its MLflow run and lineage tags, its blocking check
- `candidates.py`: a target's build gated and registered as a model version
- `releases.py`: promotion after the gate, pending releases, model cards, retention; `Registry`: what a person does
- `recovery.py`: the workspace lock, and cleaning up after a killed run
"""

from squeezeflow.lifecycle.base import METRICS, default_tracking_uri, git_commit, run_dir, safe_name
from squeezeflow.lifecycle.candidates import Candidate, read_candidate
from squeezeflow.lifecycle.recovery import Recovery
from squeezeflow.lifecycle.releases import Promotion, Registry
from squeezeflow.lifecycle.stages import StageOutcome, run_stage_locally


class Lifecycle(Recovery):
    """One workspace's lifecycle for one run's overrides: stages, candidates, releases and recovery."""


__all__ = ["METRICS", "Candidate", "Lifecycle", "Promotion", "Registry", "StageOutcome", "default_tracking_uri",
           "git_commit", "read_candidate", "run_dir", "run_stage_locally", "safe_name"]

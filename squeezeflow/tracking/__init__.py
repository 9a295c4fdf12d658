"""MLflow: one parent run per pipeline run, a child run per stage, the model registry and its promotions."""

from squeezeflow.tracking.registry import CHALLENGER, CHAMPION, champion, get_version, version_by_alias
from squeezeflow.tracking.tracker import Tracker, flatten

__all__ = ["CHALLENGER", "CHAMPION", "Tracker", "champion", "flatten", "get_version", "version_by_alias"]

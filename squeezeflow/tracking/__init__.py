"""MLflow: one parent run per pipeline run, a child run per stage, and the model registry."""

from squeezeflow.tracking.registry import Promotion, champion, promote
from squeezeflow.tracking.tracker import Tracker, flatten

__all__ = ["Promotion", "Tracker", "champion", "flatten", "promote"]

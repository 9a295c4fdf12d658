"""DVC: the change detector and the storage of every checkpoint."""

from squeezeflow.versioning.dvc import DvcStore

__all__ = ["DvcStore"]

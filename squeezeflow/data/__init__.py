"""Datasets: built-in sources, user .npz files, deterministic stratified splits, and the data checks."""

from squeezeflow.data.sources import DATASETS, Dataset, load_dataset, register_dataset
from squeezeflow.data.splits import Splits, make_splits

__all__ = ["DATASETS", "Dataset", "Splits", "load_dataset", "make_splits", "register_dataset"]

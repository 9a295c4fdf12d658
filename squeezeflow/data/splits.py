"""Deterministic stratified train/val/test splits, stored as one .npz per split."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from squeezeflow.config import SplitParams
from squeezeflow.data.sources import Dataset
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import atomic_path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {s: int(len(self.y[s])) for s in SPLITS}

    def save(self, directory: Path) -> None:
        for s in SPLITS:
            with atomic_path(Path(directory) / f"{s}.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, x=self.x[s], y=self.y[s])

    @classmethod
    def load(cls, directory: Path) -> Splits:
        x, y = {}, {}
        for s in SPLITS:
            path = Path(directory) / f"{s}.npz"
            try:
                with np.load(path, allow_pickle=False) as f:
                    x[s], y[s] = f["x"], f["y"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                raise SqueezeflowInputError(path, "<file>", str(path), "missing or unreadable split (run the dataset "
                                            f"stage again): {type(exc).__name__}: {exc}") from None
        return cls(x, y)


def expected_sizes(n: int, params: SplitParams) -> dict[str, int]:
    """Sizes as sklearn computes them (test first, then val out of the rest)."""
    n_test = int(np.ceil(n * params.test))
    rest = n - n_test
    val_frac = params.val / (1 - params.test)
    n_val = int(np.ceil(rest * val_frac))
    return {"train": rest - n_val, "val": n_val, "test": n_test}


def make_splits(data: Dataset, params: SplitParams, seed: int) -> Splits:
    if data.presplit is not None:  # the user's own split, as given
        return Splits({s: data.presplit[s][0] for s in SPLITS}, {s: data.presplit[s][1] for s in SPLITS})
    # Stratify only on labels that occur twice or more in a way sklearn accepts; otherwise explain.
    labels, counts = np.unique(data.y, return_counts=True)
    if counts.min() < 3:
        bad = labels[counts.argmin()]
        raise SqueezeflowInputError(
            data.source, "y", int(bad),
            f"label {bad} has {counts.min()} sample(s); a stratified 3-way split needs at least 3"
        )
    idx = np.arange(len(data.y))
    sizes = expected_sizes(len(idx), params)
    try:
        rest, test = train_test_split(idx, test_size=sizes["test"], stratify=data.y, random_state=seed)
        train, val = train_test_split(rest, test_size=sizes["val"], stratify=data.y[rest], random_state=seed)
    except ValueError as exc:
        raise SqueezeflowInputError(data.source, "split", params.model_dump(), f"cannot split: {exc}") from None
    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    return Splits({s: data.x[i] for s, i in parts.items()}, {s: data.y[i] for s, i in parts.items()})

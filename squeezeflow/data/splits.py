"""Deterministic stratified train/val/test splits, stored as .npy files per split (x read by rows, see rows.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezeflow.config import SplitParams
from squeezeflow.data.sources import Dataset
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.rows import ArrayFile, Take, write_npy

DEFAULT_MEMORY_MB = 1024.0
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    x: dict  # split -> an array, or Rows read from disk a batch at a time
    y: dict[str, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {s: int(len(self.y[s])) for s in SPLITS}

    def save(self, directory: Path) -> None:
        """x a chunk of rows at a time: a dataset larger than memory is never held whole."""
        for s in SPLITS:
            write_npy(Path(directory) / f"{s}-x.npy", self.x[s])
            write_npy(Path(directory) / f"{s}-y.npy", np.asarray(self.y[s], dtype=np.int64))

    @classmethod
    def load(cls, directory: Path, memory_mb: float = DEFAULT_MEMORY_MB) -> Splits:
        """A split's x is held in memory when it takes at most `memory_mb` (machine.data_memory_mb), else read
        from disk a batch at a time; the numbers are the same either way."""
        x, y = {}, {}
        for s in SPLITS:
            path = Path(directory) / f"{s}-x.npy"
            try:
                x[s] = ArrayFile(path)
                y[s] = np.load(Path(directory) / f"{s}-y.npy", allow_pickle=False)
                if len(y[s]) != len(x[s]):
                    raise ValueError(f"{len(x[s])} rows of x, {len(y[s])} labels")
            except (OSError, ValueError, KeyError, EOFError) as exc:
                raise SqueezeflowInputError(path, "<file>", str(path), "missing or unreadable split (run the dataset "
                                            f"stage again): {type(exc).__name__}: {exc}") from None
            if x[s].nbytes <= memory_mb * 2**20:
                x[s] = np.asarray(x[s])
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
    from sklearn.model_selection import train_test_split  # 1.4 s of imports only the data stage needs

    try:
        rest, test = train_test_split(idx, test_size=sizes["test"], stratify=data.y, random_state=seed)
        train, val = train_test_split(rest, test_size=sizes["val"], stratify=data.y[rest], random_state=seed)
    except ValueError as exc:
        raise SqueezeflowInputError(data.source, "split", params.model_dump(), f"cannot split: {exc}") from None
    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    # rows read on demand (a folder of images) stay on demand: Splits.save writes them a chunk at a time
    take = (lambda i: data.x[i]) if isinstance(data.x, np.ndarray) else (lambda i: Take(data.x, i))
    return Splits({s: take(i) for s, i in parts.items()}, {s: data.y[i] for s, i in parts.items()})

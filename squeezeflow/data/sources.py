"""Where data comes from. Built-ins are bundled or generated offline; nothing is downloaded."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezeflow.config import DatasetParams
from squeezeflow.errors import SqueezeflowInputError


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    x: np.ndarray  # float32, N x (any shape): the model's input layout
    y: np.ndarray  # int64 labels 0..C-1
    num_classes: int
    value_range: tuple[float, float] | None


Loader = Callable[[DatasetParams], Dataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return add


def load_dataset(params: DatasetParams, source: str = "params.yaml") -> Dataset:
    if params.name not in DATASETS:
        raise SqueezeflowInputError(source, "dataset.name", params.name, f"unknown dataset; known: {sorted(DATASETS)}")
    return DATASETS[params.name](params)


def _num_classes(params: DatasetParams, y: np.ndarray) -> int:
    return params.num_classes or int(y.max()) + 1 if y.size else 0


@register_dataset("digits")
def _digits(params: DatasetParams) -> Dataset:
    from sklearn.datasets import load_digits  # ships inside the scikit-learn wheel

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # N x 8 x 8, pixel intensities 0..16 scaled to 0..1
    return Dataset("digits", "sklearn.datasets.load_digits", x, d.target.astype(np.int64), 10,
                   params.value_range or (0.0, 1.0))


@register_dataset("mnist1d")
def _mnist1d(params: DatasetParams) -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset  # generated from templates in code, offline

    args = get_dataset_args()
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return Dataset("mnist1d", f"mnist1d.data.make_dataset(seed={args.seed})", x, y, 10,
                   params.value_range or (-10.0, 10.0))


@register_dataset("npz")
def _npz(params: DatasetParams) -> Dataset:
    path = Path(params.path or "")
    if not path.is_file():
        raise SqueezeflowInputError(path, "dataset.path", str(path), "no such file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # else numpy guesses "pickled data" for any file that is not .npy/.npz
        raise SqueezeflowInputError(path, "<file>", str(path), "not a .npz file (expected a zip archive of .npy "
                                    f"arrays as numpy.savez writes; the file starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a readable .npz file ({exc})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise SqueezeflowInputError(path, key, None, f"missing array '{key}' (found {sorted(arrays)})")
    x, y = arrays["x"], arrays["y"]
    if not np.issubdtype(x.dtype, np.floating):
        raise SqueezeflowInputError(path, "x", str(x.dtype), "x must be a float array")
    if x.ndim < 2:
        raise SqueezeflowInputError(path, "x", f"shape {x.shape}", "x must be N x (features...)")
    if not np.issubdtype(y.dtype, np.integer):
        raise SqueezeflowInputError(path, "y", str(y.dtype), "y must hold integer labels")
    if y.ndim != 1 or len(y) != len(x):
        raise SqueezeflowInputError(path, "y", f"shape {y.shape}",
                                    f"y must be 1-D with one label per row of x ({len(x)})")
    if len(y) == 0:
        raise SqueezeflowInputError(path, "x", "shape (0, ...)", "the dataset is empty")
    y = y.astype(np.int64)
    ceiling = params.num_classes
    bad = np.flatnonzero((y < 0) | (y >= ceiling if ceiling else False))
    if bad.size:
        i = int(bad[0])
        allowed = f"0..{ceiling - 1}" if ceiling else "0..C-1 (non-negative)"
        raise SqueezeflowInputError(path, "y", int(y[i]), f"labels must be in {allowed}: row {i} has {int(y[i])} "
                                    f"({bad.size} such row(s))")
    return Dataset("npz", str(path.resolve()), x.astype(np.float32), y, _num_classes(params, y), params.value_range)

"""Where data comes from. Built-ins are bundled or generated offline; nothing is downloaded."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezeflow.config import DatasetParams
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import input_array
from squeezeflow.rows import Lazy, Rows, npz_member


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    x: np.ndarray  # N x (any shape), an array or Rows (read on demand): float32, or int64 ids a model embeds
    y: np.ndarray  # int64 labels 0..C-1
    num_classes: int
    value_range: tuple[float, float] | None
    presplit: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # the user's own train/val/test, kept as given


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
            names = sorted(f.files)
            if {"x", "y"} <= set(names):
                y, x = f["y"], _npz_rows(path)
                x = f["x"] if x is None else x
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a readable .npz file ({exc})") from None
    for key in ("x", "y"):
        if key not in names:
            raise SqueezeflowInputError(path, key, None, f"missing array '{key}' (found {names})")
    x, y = checked_arrays(x, y, params, path)
    return Dataset("npz", str(path.resolve()), x, y, _num_classes(params, y), params.value_range)


def _npz_rows(path: Path) -> Rows | None:
    """x read in place, a batch at a time, where numpy.savez stored it uncompressed and C-ordered; else None (a
    savez_compressed file is decompressed into memory)."""
    try:
        return npz_member(path, "x")
    except ValueError:
        return None


def checked_arrays(x, y, params: DatasetParams, where, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """x: N x (features...), float or integer; y: N integer labels in 0..C-1. Else one error naming the field."""
    x, y = (x if isinstance(x, Rows) else np.asarray(x)), np.asarray(y)
    fx, fy = f"{prefix}x", f"{prefix}y"
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise SqueezeflowInputError(where, fx, str(x.dtype), "x must be a float array (or integer token ids)")
    if x.ndim < 2:
        raise SqueezeflowInputError(where, fx, f"shape {x.shape}", "x must be N x (features...)")
    if not np.issubdtype(y.dtype, np.integer):
        raise SqueezeflowInputError(where, fy, str(y.dtype), "y must hold integer labels")
    if y.ndim != 1 or len(y) != len(x):
        raise SqueezeflowInputError(where, fy, f"shape {y.shape}",
                                    f"y must be 1-D with one label per row of x ({len(x)})")
    if len(y) == 0:
        raise SqueezeflowInputError(where, fx, "shape (0, ...)", "the dataset is empty")
    y = y.astype(np.int64)
    ceiling = params.num_classes
    bad = np.flatnonzero((y < 0) | (y >= ceiling if ceiling else False))
    if bad.size:
        i = int(bad[0])
        allowed = f"0..{ceiling - 1}" if ceiling else "0..C-1 (non-negative)"
        raise SqueezeflowInputError(where, fy, int(y[i]), f"labels must be in {allowed}: row {i} has {int(y[i])} "
                                    f"({bad.size} such row(s))")
    return (_model_rows(x) if isinstance(x, Rows) else model_inputs(x)), y


@register_dataset("python")
def _python(params: DatasetParams) -> Dataset:
    """The user's function (dataset.factory, called with dataset.kwargs): (x, y) arrays, a dict with x and y, a torch
    Dataset of (x, y) items, or {train, val, test} of any of those (used as given: no split here)."""
    from squeezeflow.imports import import_ref

    where, ref = "params.yaml", str(params.factory)
    try:
        out = import_ref(ref)(**params.kwargs)
    except ValueError as exc:
        raise SqueezeflowInputError(where, "dataset.factory", ref, str(exc)) from None
    except Exception as exc:
        raise SqueezeflowInputError(where, "dataset.factory", ref, f"raised {type(exc).__name__}: {exc}") from None
    if isinstance(out, dict) and set(out) >= {"train", "val", "test"}:
        parts = {s: checked_arrays(*_pair(out[s], where, ref, f"{s}."), params, where, f"{s}.")
                 for s in ("train", "val", "test")}
        x = _concat([parts[s][0] for s in parts])
        y = np.concatenate([parts[s][1] for s in parts])
        return Dataset("python", ref, x, y, _num_classes(params, y), params.value_range, presplit=parts)
    x, y = checked_arrays(*_pair(out, where, ref), params, where)
    return Dataset("python", ref, x, y, _num_classes(params, y), params.value_range)


def _concat(parts: list) -> np.ndarray | Lazy:
    if not any(isinstance(p, Rows) for p in parts):
        return np.concatenate(parts)
    bounds = np.cumsum([0] + [len(p) for p in parts])

    def read(idx: np.ndarray) -> np.ndarray:
        part = np.searchsorted(bounds, idx, side="right") - 1
        return np.stack([np.asarray(parts[k][int(i - bounds[k])]) for i, k in zip(idx, part, strict=True)])

    return Lazy(int(bounds[-1]), parts[0].shape[1:], parts[0].dtype, read)


def _pair(out, where, ref: str, prefix: str = "") -> tuple:
    """(x, y) from a tuple, a dict or a torch Dataset (items stacked: it is read once, here)."""
    if isinstance(out, dict) and {"x", "y"} <= set(out):
        return out["x"], out["y"]
    if isinstance(out, tuple | list) and len(out) == 2:
        return _numpy(out[0]), _numpy(out[1])
    if hasattr(out, "__getitem__") and hasattr(out, "__len__") and len(out):  # a map-style torch Dataset
        first = out[0]
        if isinstance(first, tuple | list) and len(first) == 2:
            return _items(out, _numpy(first[0]))
    raise SqueezeflowInputError(where, "dataset.factory", ref, f"{prefix or ''}returned {type(out).__name__}: "
                                "expected (x, y) arrays, a dict with x and y, a torch Dataset of (x, y) items, "
                                "or a dict of train, val and test")


def _items(ds, first: np.ndarray) -> tuple[Lazy, np.ndarray]:
    """A torch Dataset's x read item by item when asked (it need not fit in memory); its labels now, from
    `ds.targets` where it has them (torchvision's convention), else from one pass over the items."""
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == len(ds):
        y = np.asarray([int(_numpy(t)) for t in targets])
    else:
        y = np.asarray([int(_numpy(ds[i][1])) for i in range(len(ds))])
    dtype = np.float32 if first.dtype == np.uint8 else first.dtype
    return Lazy(len(ds), first.shape, dtype, lambda idx: np.stack([_numpy(ds[int(i)][0]) for i in idx])), y


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def model_inputs(x: np.ndarray) -> np.ndarray:
    """uint8 is pixel intensities (float32, as they are); other integers are token ids or category indices that the
    user's model embeds (int64); floats are float32."""
    return x.astype(np.float32) if x.dtype == np.uint8 else input_array(x)


def _model_rows(x: Rows) -> Rows:
    """model_inputs for rows read later: converted a batch at a time."""
    dtype = model_inputs(np.empty((0, *x.shape[1:]), x.dtype)).dtype
    return x if dtype == x.dtype else Lazy(len(x), x.shape[1:], dtype, lambda idx: model_inputs(x[idx]))


def _labels(values, where: Path, field: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class ids 0..C-1 and the class names, sorted (integer labels by value, others by name)."""
    import pandas as pd

    series = pd.Series(values)
    if series.isna().any():
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise SqueezeflowInputError(where, field, None, f"row {row} has no label")
    if pd.api.types.is_integer_dtype(series) and series.min() >= 0:
        y = series.to_numpy().astype(np.int64)
        return y, tuple(str(c) for c in range(int(y.max()) + 1))
    names = sorted(series.astype(str).unique())
    index = {n: i for i, n in enumerate(names)}
    return series.astype(str).map(index).to_numpy().astype(np.int64), tuple(names)


@register_dataset("table")
def _table(params: DatasetParams) -> Dataset:
    """A CSV or Parquet file: one row per sample, a label column; numeric columns as they are, text/boolean/
    categorical columns one-hot encoded (their categories sorted, so the encoding is the same on every run)."""
    import pandas as pd

    path = Path(params.path or "")
    if not path.is_file():
        raise SqueezeflowInputError(path, "dataset.path", str(path), "no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(path)
        else:
            raise SqueezeflowInputError(path, "dataset.path", str(path), "a table is a .csv or .parquet file")
    except SqueezeflowInputError:
        raise
    except Exception as exc:  # pandas/pyarrow parse errors
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a readable table ({type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:160]})") from None
    if params.label_column not in frame.columns:
        raise SqueezeflowInputError(path, "dataset.label_column", params.label_column,
                                    f"no such column; the table has {list(map(str, frame.columns))[:12]}")
    if len(frame) == 0:
        raise SqueezeflowInputError(path, "<file>", str(path), "the table has no rows")
    y, _ = _labels(frame[params.label_column], path, params.label_column)
    features = frame.drop(columns=[params.label_column])
    if features.shape[1] == 0:
        raise SqueezeflowInputError(path, "<file>", str(path), "the table has no feature columns besides the label")
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                   or pd.api.types.is_bool_dtype(features[c])]
    for c in categorical:
        features[c] = pd.Categorical(features[c].astype(str), categories=sorted(features[c].astype(str).unique()))
    x = pd.get_dummies(features, columns=categorical, dtype=np.float32).to_numpy(dtype=np.float32)
    return Dataset("table", str(path.resolve()), x, y, _num_classes(params, y), params.value_range)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@register_dataset("image_folder")
def _image_folder(params: DatasetParams) -> Dataset:
    """One subfolder per class (its name is the class; classes sorted by name) of PNG/JPEG/... images, decoded,
    resized to image_size and scaled to 0..1: x is N x H x W (grayscale) or N x 3 x H x W (RGB)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(params.path or "")
    if not root.is_dir():
        raise SqueezeflowInputError(root, "dataset.path", str(root), "no such folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).rglob("*"))
             if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise SqueezeflowInputError(root, "dataset.path", str(root), f"expected one subfolder of images per class "
                                    f"(at least 2); found {len(classes)} subfolder(s) and {len(files)} image(s)")

    def decode(f: Path) -> Image.Image:
        try:
            with Image.open(f) as im:
                im.load()
                return im.copy()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise SqueezeflowInputError(f, "<file>", str(f), f"not a decodable image ({exc})") from None

    first = decode(files[0][0])
    h, w = params.image_size or (first.height, first.width)
    mode = {1: "L", 3: "RGB"}.get(params.channels or 0)
    # A look at every image's header now (cheap): a file that is no image is named before anything runs, and
    # colour is used when any image has it. Pixels are decoded later, when the rows are read.
    colours = [_colour(f) for f, _ in files]
    if mode is None:
        mode = "RGB" if any(colours) else "L"
    shape = (3, h, w) if mode == "RGB" else (h, w)

    def read(idx: np.ndarray) -> np.ndarray:  # decoded when read: the folder is never held whole
        out = np.empty((len(idx), *shape), dtype=np.float32)
        for k, i in enumerate(idx):
            arr = np.asarray(decode(files[i][0]).convert(mode).resize((w, h), Image.BILINEAR), np.float32) / 255.0
            out[k] = arr.transpose(2, 0, 1) if mode == "RGB" else arr
        return out

    y = np.array([i for _, i in files], dtype=np.int64)
    return Dataset("image_folder", str(root.resolve()), Lazy(len(files), shape, np.float32, read), y,
                   params.num_classes or len(classes), params.value_range or (0.0, 1.0))


def _colour(f: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            return im.mode not in ("1", "L", "LA", "I", "I;16", "F")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SqueezeflowInputError(f, "<file>", str(f), f"not a decodable image ({exc})") from None

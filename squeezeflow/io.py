"""Atomic writes and content hashes: nothing half-written, artifacts identified by content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def input_array(x) -> np.ndarray:
    """A batch as a model takes it: integer arrays (token ids, category indices) as int64, everything else float32."""
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32)


BATCH_BYTES = 4 << 20  # an inference batch of large rows (images) holds at most this much input


def batch_rows(x, size: int) -> int:
    """`size` rows, or fewer where that many rows of `x` would take more than BATCH_BYTES."""
    row = max(1, int(np.prod(x.shape[1:])) * np.dtype(x.dtype).itemsize)
    return max(1, min(size, BATCH_BYTES // row))


def input_batches(x, size: int, stop: int | None = None) -> Iterator[np.ndarray]:
    """`x` (an array, or rows read from disk) as model-ready batches of up to `size` rows, in order, up to row
    `stop`: only one batch of a split larger than memory is held at a time."""
    size, stop = batch_rows(x, size), len(x) if stop is None else min(stop, len(x))
    for i in range(0, stop, size):
        yield input_array(x[i : min(i + size, stop)])


def predict_batches(predict: Callable[[np.ndarray], np.ndarray], x, size: int) -> np.ndarray:
    """`predict(batch)` over `x`'s rows (input_batches), written into one array made at the first batch. Not a
    list of per-batch outputs joined at the end: each small output kept between a batch's large freed temporaries
    pinned them in malloc's heap (a CNN teacher over 83k train rows in batches of 128 grew RSS by 800 MB)."""
    out, i = None, 0
    for batch in input_batches(x, size):
        y = predict(batch)
        if out is None:
            out = np.empty((len(x), *np.shape(y)[1:]), np.asarray(y).dtype)
        out[i : i + len(y)] = y
        i += len(y)
        del y  # released before the next batch runs
    if out is None:
        raise ValueError("no rows to predict")
    return out


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it into place only if the block succeeds (its bytes on disk first,
    so a power cut after the rename never leaves an empty file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Every file and folder under `path` on disk, deepest first."""
    for d, _, files in os.walk(path, topdown=False):
        for f in files:
            if not os.path.islink(os.path.join(d, f)):
                _fsync(Path(d) / f)
        _fsync(Path(d))


ASIDE = ".old-"  # `.<name>.old-<random>`: a complete output moved aside while its replacement moves in


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


_YAML_READ: dict[str, tuple[tuple, Any]] = {}


def read_yaml_cached(path: Path) -> Any:
    """A YAML file read many times in a run (the resolved recipes, per stage), parsed again only when it changed
    on disk (mtime, size, inode). Callers must not change what it returns."""
    stat = Path(path).stat()
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    known = _YAML_READ.get(str(path))
    if known is None or known[0] != key:
        known = (key, yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        _YAML_READ[str(path)] = known
    return known[1]


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a directory in a temp sibling, then swap it in: readers never see a partial stage output, and no
    moment exists without a complete one (the old one is renamed aside, the new one renamed in, then the old one
    deleted; squeezeflow.runlock.remove_temp_files puts an aside output back if a kill came in between)."""
    from squeezeflow import faults

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        aside = None
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}{ASIDE}", dir=path.parent))
            os.replace(path, aside)  # onto the empty folder just made: an atomic rename
            faults.point("stage-aside", path.name)
        os.replace(tmp, path)
        _fsync(path.parent)
        faults.point("stage-swapped", path.name)
        if aside is not None:
            shutil.rmtree(aside)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of a directory's relative names and file contents."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()

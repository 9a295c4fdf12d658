"""Arrays too large to hold in memory: N x ... rows read a batch at a time.

A split is a .npy file on disk. `ArrayFile` reads the rows asked for with plain file reads (not a memory map, whose
touched pages would count as this process's memory until the kernel evicts them), so training, calibration and
evaluation hold one batch of a split at a time; the page cache, not the process, keeps what fits. `Rows` is the
small protocol they all take besides numpy arrays: `len`, `shape`, `dtype`, and indexing by an int, a slice or an
array of row numbers, which returns a numpy array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from squeezeflow.io import atomic_path

CHUNK_BYTES = 4 << 20  # what one read or write of many rows holds at most


class Rows:
    """Read-only rows; subclasses implement `_take(sorted unique indices)`."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # x[rows, ...]: the rows first, then the rest in memory
            first = self[key[0]]
            return first[key[1:]] if isinstance(key[0], int | np.integer) else first[(slice(None), *key[1:])]
        if isinstance(key, int | np.integer):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self._take(np.array([i]))[0]
        if isinstance(key, slice):
            return self._take(np.arange(*key.indices(len(self))))
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + len(self), idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._take(uniq)[inverse.reshape(-1)]

    def _take(self, sorted_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def chunk_rows(x) -> int:
    """How many rows of `x` make one chunk of about CHUNK_BYTES."""
    row = max(1, math.prod(x.shape[1:]) * np.dtype(x.dtype).itemsize)
    return max(1, CHUNK_BYTES // row)


def chunks(x) -> Iterator[np.ndarray]:
    """`x` (an array or Rows) in consecutive chunks of rows, in order."""
    step = chunk_rows(x)
    for i in range(0, len(x), step):
        yield np.asarray(x[i : i + step])


def sample(x, n: int) -> np.ndarray:
    """Up to `n` rows spread evenly over `x` (all of them when it has fewer): what statistics that need every value
    at once (a correlation matrix) look at."""
    if len(x) <= n:
        return np.asarray(x[:])
    return np.asarray(x[np.linspace(0, len(x) - 1, n).round().astype(np.int64)])


class ArrayFile(Rows):
    """A C-ordered .npy file, read by row ranges; `start`: where it begins inside a larger file (an uncompressed
    member of an .npz archive)."""

    def __init__(self, path: Path, start: int = 0):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{self.path}: not a C-ordered numeric array with rows")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = math.prod(shape[1:]) * dtype.itemsize
        expected = self.offset + self.row_bytes * shape[0]
        if self.path.stat().st_size < expected:
            raise ValueError(f"{self.path}: truncated ({self.path.stat().st_size} bytes, expected {expected})")

    def _take(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        if not len(idx):
            return out
        view = out.reshape(len(idx), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1  # runs of consecutive rows: one read each
        with open(self.path, "rb", buffering=0) as f:
            for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(idx)], strict=True):
                f.seek(self.offset + int(idx[start]) * self.row_bytes)
                want = int(stop - start) * self.row_bytes
                got = f.readinto(memoryview(view[start:stop]).cast("B"))
                if got != want:
                    raise OSError(f"{self.path}: short read ({got} of {want} bytes)")
        return out


class Take(Rows):
    """Some rows of another array (a split of a dataset), read from it only when asked."""

    def __init__(self, parent, indices: np.ndarray):
        self.parent, self.indices = parent, np.asarray(indices, dtype=np.int64)
        self.shape, self.dtype = (len(self.indices), *parent.shape[1:]), np.dtype(parent.dtype)

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.parent[self.indices[idx]])


class Lazy(Rows):
    """Rows made on demand by `read(indices) -> array` (decoded images, a torch Dataset's items)."""

    def __init__(self, n: int, row_shape: Sequence[int], dtype, read: Callable[[np.ndarray], np.ndarray]):
        self.shape, self.dtype, self._read = (n, *row_shape), np.dtype(dtype), read

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self._read(idx), dtype=self.dtype).reshape(len(idx), *self.shape[1:])


def npz_member(path: Path, name: str) -> ArrayFile | None:
    """Array `name` of an .npz archive read in place, when numpy.savez stored it uncompressed (a savez_compressed
    member cannot be read by row ranges: None)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:  # the data follows the member's local header, whose extra field may differ
        f.seek(info.header_offset)
        local = f.read(30)
    if local[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: member {name}.npy has no local header where the directory says")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return ArrayFile(path, info.header_offset + 30 + name_len + extra_len)


def write_npy(path: Path, x, dtype=None) -> None:
    """`x` (an array or Rows) to a .npy file that np.load reads, a chunk at a time, atomically."""
    dtype = np.dtype(dtype or x.dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(x.shape)}
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        try:
            np.lib.format.write_array_header_1_0(f, header)
        except ValueError:  # a header over 64 KiB (a very long shape)
            np.lib.format.write_array_header_2_0(f, header)
        for part in chunks(x):
            f.write(np.ascontiguousarray(part, dtype=dtype).tobytes())

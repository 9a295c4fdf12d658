"""A frozen teacher's outputs on the train split: computed once per sample and kept on disk, keyed by a digest of the
teacher (its module tree and every weight) and of the data. Inputs are never augmented, so the compressed and
finetuned stages of every recipe distilled from one teacher share one pass over the data instead of one each."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from squeezeflow.io import atomic_path

KEEP = 8  # cached files per workspace: the newest; an older teacher's outputs are recomputed if ever needed again
CHUNK_BYTES = 8 << 20


def model_digest(model: nn.Module) -> str | None:
    """Its module tree and every parameter and buffer, by value; None when that cannot say what the model computes
    (no weights at all, e.g. a wrapped ONNX session, or a tensor type without raw bytes): then nothing is cached."""
    state = model.state_dict()
    if not state:
        return None
    h = hashlib.blake2b(repr(model).encode(), digest_size=16)
    for name, value in state.items():
        h.update(name.encode())
        if not isinstance(value, torch.Tensor):
            h.update(repr(value).encode())
            continue
        try:
            raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        except (RuntimeError, TypeError):  # quantized or sparse tensors have no plain byte view
            return None
        h.update(f"{value.dtype}{tuple(value.shape)}".encode())
        h.update(memoryview(raw))
    return h.hexdigest()


def data_digest(x) -> str:
    """The rows' bytes, shape and dtype (an array, or rows on disk read a chunk at a time)."""
    shape, dtype = tuple(x.shape), np.dtype(x.dtype)
    h = hashlib.blake2b(f"{dtype.str}{shape}".encode(), digest_size=16)
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
    step = max(1, CHUNK_BYTES // row_bytes)
    for i in range(0, len(x), step):
        h.update(memoryview(np.ascontiguousarray(x[i : i + step])).cast("B"))
    return h.hexdigest()


def teacher_logits(teacher: nn.Module, x, folder: Path | None, compute: Callable[[nn.Module, object], np.ndarray],
                   log: Callable[[str], None] = print) -> torch.Tensor:
    """`compute(teacher, x)`, or what an identical teacher computed on identical rows before (`folder`: the cache;
    None: always compute). A cached file that cannot be read, or of the wrong shape, is computed again."""
    key = model_digest(teacher) if folder is not None else None
    if key is None:
        return torch.as_tensor(compute(teacher, x))
    path = Path(folder) / f"{key}-{data_digest(x)}.npy"
    if path.exists():
        try:
            logits = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            logits = None
        if logits is not None and logits.ndim == 2 and len(logits) == len(x):
            with contextlib.suppress(OSError):  # pruned by another process meanwhile: what was read stands
                path.touch()  # recently used: kept by the pruning below
            log(f"[squeezeflow] teacher outputs on {len(x)} train samples: reused ({path.name[:12]}...)")
            return torch.as_tensor(logits)
    logits = np.ascontiguousarray(compute(teacher, x))
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits, allow_pickle=False)
        _prune(Path(folder))
    except OSError as exc:  # a cache: a full or read-only disk costs the next stage a recomputation, nothing more
        log(f"[squeezeflow] teacher outputs not kept for reuse: {exc}")
    return torch.as_tensor(logits)


def _prune(folder: Path, keep: int = KEEP) -> None:
    def age(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # removed by another process meanwhile
            return 0.0

    for old in sorted(folder.glob("*.npy"), key=age, reverse=True)[keep:]:
        old.unlink(missing_ok=True)

"""A small, real task for technique tests: three Gaussian blobs in 8x8 'images', and a trained teacher."""

from __future__ import annotations

import numpy as np
import pytest

from squeezeflow.compression import CompressContext
from squeezeflow.config import TrainParams
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.training import fit, seed_everything

FAST = TrainParams(epochs=25, patience=8, lr=1e-2)


def blobs(n: int = 360, seed: int = 0, sep: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(size=(3, 8, 8)).astype(np.float32)
    x = (centers[y] * sep + rng.normal(size=(n, 8, 8))).astype(np.float32)
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def task() -> CompressContext:
    x, y = blobs()
    train, val = (x[:240], y[:240]), (x[240:], y[240:])
    spec = ModelSpec("mlp", (8, 8), 3, (64,))
    seed_everything(0)
    teacher = build_model(spec)
    fit(teacher, train, val, FAST, 0, "teacher")
    return CompressContext(teacher.eval(), spec, train, val, seed=0, log=lambda _: None)

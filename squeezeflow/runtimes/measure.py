"""On-device validation: accuracy through the target's runtime, file size, latency and throughput."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from squeezeflow.config import Strict
from squeezeflow.export.onnx import INPUT, OUTPUT, session
from squeezeflow.stats import wilson_interval


class MeasureSpec(Strict):
    """How a target's runtime is measured (the `measure:` section of its YAML)."""

    threads: int = Field(1, ge=1, le=256)
    warmup: int = Field(20, ge=0)
    iterations: int = Field(200, ge=10, le=1_000_000)
    throughput_batch: int = Field(256, ge=1)
    session_options: dict[str, str] = Field(default_factory=dict, description="ONNX Runtime session config entries "
                                            "the deployed runtime uses, e.g. session.disable_quant_qdq: '1'")


def gzip_bytes(path: Path) -> int:
    """Size on the wire: what an over-the-air update or a download actually ships."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


def measure(model_path: Path, x: np.ndarray, y: np.ndarray, spec: MeasureSpec) -> dict:
    sess = session(model_path, spec.threads, spec.session_options)
    x = x.astype(np.float32)
    logits = np.concatenate([sess.run([OUTPUT], {INPUT: x[i : i + 512]})[0] for i in range(0, len(x), 512)])
    one = x[:1]
    for _ in range(spec.warmup):
        sess.run([OUTPUT], {INPUT: one})
    times = np.empty(spec.iterations)
    for i in range(spec.iterations):
        t0 = time.perf_counter()
        sess.run([OUTPUT], {INPUT: x[i % len(x)][None]})
        times[i] = time.perf_counter() - t0
    batch = np.resize(x, (spec.throughput_batch, *x.shape[1:]))
    sess.run([OUTPUT], {INPUT: batch})
    reps, t0 = 0, time.perf_counter()
    while reps < 5 or time.perf_counter() - t0 < 0.5:
        sess.run([OUTPUT], {INPUT: batch})
        reps += 1
    elapsed = time.perf_counter() - t0
    correct = int((logits.argmax(1) == y).sum())
    low, high = wilson_interval(correct, len(y))
    return {
        "accuracy": float((logits.argmax(1) == y).mean() * 100.0),
        "accuracy_ci95_low": low,
        "accuracy_ci95_high": high,
        "model_bytes": Path(model_path).stat().st_size,
        "model_gzip_bytes": gzip_bytes(model_path),
        "latency_p50_ms": float(np.percentile(times, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(times, 95) * 1e3),
        "throughput_per_s": float(reps * spec.throughput_batch / elapsed),
        "threads": spec.threads,
        "test_samples": int(len(y)),
    }

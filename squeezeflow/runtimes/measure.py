"""On-device validation: accuracy through the target's runtime, file size, latency and throughput."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from squeezeflow.io import batch_rows, input_array
from squeezeflow.runtimes.engines import load_engine, load_runtimes
from squeezeflow.stats import wilson_interval
from squeezeflow.strict import Strict


class MeasureSpec(Strict):
    """How a target's runtime is measured (the `measure:` section of its YAML)."""

    threads: int = Field(1, ge=1, le=256, description="intra-op threads of the runtime's session")
    warmup: int = Field(20, ge=0, description="untimed calls before the timed ones")
    iterations: int = Field(200, ge=10, le=1_000_000, description="timed batch-1 calls: latency p50/p95/p99 "
                            "come from these")
    throughput_batch: int = Field(256, ge=1, description="batch size of the throughput measurement")
    throughput_seconds: float = Field(0.25, gt=0, le=600, description="the throughput measurement runs batches for "
                                      "at least this long (and at least 5)")
    session_options: dict[str, str] = Field(default_factory=dict, description="ONNX Runtime session config entries "
                                            "the deployed runtime uses, e.g. session.disable_quant_qdq: '1'")
    isolated: bool = Field(True, description="measure in a separate process under the limits below (the device's "
                           "constraints); false: inside the pipeline's process")
    memory_limit_mb: int | None = Field(None, ge=16, le=1_048_576, description="address-space cap of the "
                                        "measuring process (RLIMIT_AS): a model that needs more fails its gate")
    cpu_affinity: tuple[int, ...] | None = Field(None, description="CPU cores the measuring process may run on")
    batch_sizes: tuple[int, ...] = Field((), description="also report latency p50/p95 at these batch sizes")
    timeout_s: float = Field(600, gt=0, le=86_400, description="a measurement taking longer fails the run's "
                             "validation of this target (not a verdict: nothing is registered, the next run "
                             "measures again)")


def mlflow_session_options(spec: MeasureSpec) -> dict:
    """The session the target was validated with, in MLflow's `onnx_session_options` form (what
    mlflow.pyfunc.load_model applies): the same threads and session config entries as `onnxio.session`."""
    return {"intra_op_num_threads": spec.threads, "inter_op_num_threads": 1, "execution_mode": "sequential",
            "extra_session_config": dict(spec.session_options)}


def gzip_bytes(path: Path) -> int:
    """Size on the wire: what an over-the-air update or a download actually ships."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


def measure(model_path: Path, x: np.ndarray, y: np.ndarray, spec: MeasureSpec, runtime: str = "onnxruntime",
            reference: np.ndarray | None = None) -> dict:
    """Accuracy through the runtime, bytes, session load time, latency p50/p95/p99 at batch 1 (and at
    spec.batch_sizes), throughput; with `reference` (the reference model's predicted classes), the share of samples
    on which the runtime predicts the same class (the sim-to-device gap). In this process: see measure_isolated
    for the device's constraints."""
    load_runtimes()  # the plugin modules imported before the clock starts: the load time is the runtime's own
    t_load = time.perf_counter()
    engine = load_engine(runtime, model_path, spec.threads, spec.session_options)
    load_seconds = time.perf_counter() - t_load
    logits = engine.predict(x)  # x: an array or rows on disk, a batch at a time
    # What the timed calls cycle through, read beforehand: the same rows, in the same order, as indexing x would.
    rows = input_array(x[: batch_rows(x, max(spec.iterations, spec.throughput_batch, *spec.batch_sizes, 1))])
    one = rows[:1]
    for _ in range(spec.warmup):
        engine.run(one)
    times = np.empty(spec.iterations)
    for i in range(spec.iterations):
        t0 = time.perf_counter()
        engine.run(rows[i % len(rows)][None])
        times[i] = time.perf_counter() - t0
    batch = np.resize(rows, (spec.throughput_batch, *rows.shape[1:]))
    engine.run(batch)
    reps, t0 = 0, time.perf_counter()
    while reps < 5 or time.perf_counter() - t0 < spec.throughput_seconds:
        engine.run(batch)
        reps += 1
    elapsed = time.perf_counter() - t0
    per_batch = {}
    for b in spec.batch_sizes:
        xb = np.resize(rows, (b, *rows.shape[1:]))
        bt = np.empty(max(10, spec.iterations // 10))
        for i in range(len(bt)):
            t1 = time.perf_counter()
            engine.run(xb)
            bt[i] = time.perf_counter() - t1
        per_batch[f"latency_p50_ms_b{b}"] = float(np.percentile(bt, 50) * 1e3)
        per_batch[f"latency_p95_ms_b{b}"] = float(np.percentile(bt, 95) * 1e3)
    correct = int((logits.argmax(1) == y).sum())
    low, high = wilson_interval(correct, len(y))
    agreement = {} if reference is None else {
        "agreement_with_reference": float((logits.argmax(1) == np.asarray(reference)).mean() * 100.0)}
    return {
        "accuracy": float((logits.argmax(1) == y).mean() * 100.0),
        "accuracy_ci95_low": low,
        "accuracy_ci95_high": high,
        **agreement,
        "model_bytes": Path(model_path).stat().st_size,
        "model_gzip_bytes": gzip_bytes(model_path),
        "latency_p50_ms": float(np.percentile(times, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(times, 95) * 1e3),
        "latency_p99_ms": float(np.percentile(times, 99) * 1e3),
        **dict(zip(("latency_p95_ms_low", "latency_p95_ms_high"), _p95_interval(times), strict=True)),
        **per_batch,
        "throughput_per_s": float(reps * spec.throughput_batch / elapsed),
        "load_ms": load_seconds * 1e3,
        "threads": spec.threads,
        "runtime": runtime,
        "test_samples": int(len(y)),
    }


def _p95_interval(times: np.ndarray, n_boot: int = 400) -> tuple[float, float]:
    """A 95% bootstrap interval of the p95 latency, in ms: two measurements whose intervals overlap are not shown
    to differ (recipe selection treats them as a tie)."""
    rng = np.random.default_rng(0)
    boot = np.percentile(times[rng.integers(0, len(times), (n_boot, len(times)))], 95, axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(low * 1e3), float(high * 1e3)


def unavailable_metrics(model_path: Path, reason: str, runtime: str, samples: int) -> dict:
    """What validation reports for a runtime that cannot run here: its gate fails closed with the reason."""
    return {"error": f"unavailable: {reason}", "unavailable": reason, "runtime": runtime,
            "model_bytes": Path(model_path).stat().st_size, "model_gzip_bytes": gzip_bytes(model_path),
            "test_samples": int(samples)}


def measure_on_device(model_path: Path, x: np.ndarray, y: np.ndarray, spec: MeasureSpec,
                      runtime: str = "onnxruntime", reference: np.ndarray | None = None) -> dict:
    """Validation on this machine: unavailable (with the reason), or measured in the constrained process
    (`spec.isolated`) or in this one. The validate stage and the device agent both measure through this."""
    from squeezeflow.runtimes.engines import engine_unavailable

    reason = engine_unavailable(runtime)
    if reason:
        return unavailable_metrics(model_path, reason, runtime, len(y))
    how = measure_isolated if spec.isolated else measure
    return how(model_path, x, y, spec, runtime, reference)


def measure_isolated(model_path: Path, x: np.ndarray, y: np.ndarray, spec: MeasureSpec,
                     runtime: str = "onnxruntime", reference: np.ndarray | None = None) -> dict:
    """`measure` in a fresh process under the target's constraints (threads, CPU affinity, address-space cap,
    timeout), plus its peak RSS. A model that crashes the runtime or runs out of memory returns {"error": reason}
    instead of raising: its gate fails with that reason and the other targets go on. Running out of time is
    {"error", "transient"}: a busy machine says nothing about the model."""
    return run_isolated({"task": "measure", "model": str(Path(model_path).resolve())}, x, y, spec, runtime,
                        reference)


def run_isolated(task: dict, x: np.ndarray, y: np.ndarray, spec: MeasureSpec, runtime: str = "onnxruntime",
                 reference: np.ndarray | None = None) -> dict:
    """One task of squeezeflow.runtimes.worker (measure a model, compare two) in a fresh process under `spec`'s
    constraints and with a minimal environment: the models it loads never run in the pipeline's process."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sf-measure-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        from squeezeflow.rows import write_npy

        write_npy(Path(tmp) / "x.npy", x)  # a chunk at a time; the worker reads it back by batches
        np.save(Path(tmp) / "y.npy", np.asarray(y))
        if reference is not None:
            np.save(Path(tmp) / "reference.npy", np.asarray(reference))
        request.write_text(json.dumps({**task, "data": tmp, "spec": spec.model_dump(mode="json"),
                                       "result": str(result), "runtime": runtime}))
        try:
            proc = subprocess.run([sys.executable, "-m", "squeezeflow.runtimes.worker", str(request)],
                                  capture_output=True, text=True, timeout=spec.timeout_s, env=worker_env())
        except subprocess.TimeoutExpired:
            why = f"the measurement took longer than {spec.timeout_s:g} s (measure.timeout_s)"
            return {"error": why, "transient": why}  # a busy machine, not the model: measured again next run
        if proc.returncode == 0 and result.exists():
            return json.loads(result.read_text())
        return {"error": _failure(proc.returncode, proc.stderr, spec)}


# What the measuring process inherits: locale, paths and the runtimes' own settings; never tokens or credentials.
_WORKER_ENV = ("PATH", "HOME", "LANG", "LC_", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "CUDA_", "NVIDIA_", "OMP_", "MKL_",
               "OPENBLAS_", "KMP_", "ORT_", "OV_", "TRT_", "TENSORRT_", "PYTHONHASHSEED")


def worker_env() -> dict:
    """A minimal environment for the measuring process, with the folder squeezeflow is imported from first on the
    path: the worker finds the same package whatever its working directory (the device agent runs in its own
    folder), and a model it loads cannot read the agent's token or the pipeline's cloud credentials."""
    import os

    import squeezeflow

    root = str(Path(squeezeflow.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    env = {k: v for k, v in os.environ.items() if k.startswith(_WORKER_ENV)}
    return {**env, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _failure(code: int, stderr: str, spec: MeasureSpec) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if code < 0:
        import signal

        what = f"killed by {signal.Signals(-code).name}"
    else:
        what = f"exit code {code}"
    cap = f" under measure.memory_limit_mb={spec.memory_limit_mb}" if spec.memory_limit_mb else ""
    return f"the runtime failed in its measuring process{cap} ({what}): {last[:300] or 'no message'}"

"""Validation in a process of its own, under the target's constraints: the numbers, and the failures that must
become a failed gate (never an exception in the pipeline)."""

import numpy as np
import pytest
import torch

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes import MeasureSpec, measure, measure_isolated

FAST = dict(warmup=2, iterations=30, throughput_batch=16)


def test_peak_memory_is_the_measuring_process_own(model):
    """Not the pipeline process it was started from (Linux carries getrusage's maxrss over exec)."""
    path, x, y = model
    ballast = np.ones(100_000_000)  # 800 MB resident in this process
    got = measure_isolated(path, x, y, MeasureSpec(**FAST))
    assert ballast.sum() == 1e8 and got["peak_rss_mb"] < 400


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    export_onnx(build_model(ModelSpec("mlp", (8, 8), 10, (32,))).eval(), (8, 8), path, 17)
    x = np.random.default_rng(0).random((200, 8, 8)).astype(np.float32)
    y = onnx_logits(path, x).argmax(1)
    y[:20] = (y[:20] + 1) % 10  # 90% right: accuracy is not trivially 100
    return path, x, y


def test_isolated_measurement_matches_in_process_and_adds_memory_and_load_time(model):
    path, x, y = model
    spec = MeasureSpec(**FAST, batch_sizes=(8,), cpu_affinity=(0,))
    got = measure_isolated(path, x, y, spec)
    assert "error" not in got, got
    assert got["accuracy"] == measure(path, x, y, MeasureSpec(**FAST))["accuracy"] == 90.0
    assert 10 < got["peak_rss_mb"] < 400 and got["load_ms"] > 0
    assert 0 < got["latency_p50_ms"] <= got["latency_p95_ms"] <= got["latency_p99_ms"]
    assert got["latency_p50_ms_b8"] > 0 and got["cpus"] == [0]


def test_a_memory_cap_too_small_is_a_reason_not_an_exception(model):
    path, x, y = model
    got = measure_isolated(path, x, y, MeasureSpec(**FAST, memory_limit_mb=64))
    assert set(got) == {"error"}
    assert "memory_limit_mb=64" in got["error"] and "failed in its measuring process" in got["error"]


def test_a_file_the_runtime_cannot_load_is_a_reason_too(tmp_path, model):
    _, x, y = model
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    got = measure_isolated(bad, x, y, MeasureSpec(**FAST))
    assert set(got) == {"error"} and "not a model ONNX Runtime can load" in got["error"]


def test_a_measurement_past_its_timeout_fails(model):
    path, x, y = model
    got = measure_isolated(path, x, y, MeasureSpec(warmup=0, iterations=1_000_000, throughput_batch=16, timeout_s=3))
    why = "the measurement took longer than 3 s (measure.timeout_s)"
    assert got == {"error": why, "transient": why}  # the machine was busy or slow: not a verdict on the model


def test_the_measuring_process_gets_no_tokens_or_credentials(monkeypatch):
    from squeezeflow.runtimes.measure import worker_env

    for secret in ("AWS_SECRET_ACCESS_KEY", "SQUEEZEFLOW_AGENT_TOKEN", "MLFLOW_TRACKING_PASSWORD",
                   "SQUEEZEFLOW_WEBHOOK_URL", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(secret, "do-not-leak")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = worker_env()
    assert "do-not-leak" not in env.values() and env["OMP_NUM_THREADS"] == "1" and "PATH" in env

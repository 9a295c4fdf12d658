"""The device agent as a real process on loopback: the same measurement as here, and its refusals."""

import http.client
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from squeezeflow.export import export_onnx, onnx_logits
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes.agent import measure_remote
from squeezeflow.runtimes.measure import MeasureSpec, measure_on_device
from squeezeflow.stages.validate import measure_target
from squeezeflow.targets import TargetProfile

TOKEN = "s3cret-token-for-tests-0123456789"
SPEC = MeasureSpec(iterations=20, warmup=2, throughput_batch=16)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model(ModelSpec("mlp", (16,), 4, (64,))).eval()
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    export_onnx(m, (16,), path, 17)
    x = np.random.default_rng(0).normal(size=(80, 16)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 4, 80)
    return path, x, y


def start_agent(tmp_path, *extra):
    (tmp_path / "token").write_text(TOKEN + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "squeezeflow.runtimes.agent", "--port", "0", "--token-file",
                             str(tmp_path / "token"), "--dir", str(tmp_path / "agent"), *extra],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return proc, found[1]
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the agent did not start: {proc.stderr.read()}")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    proc, url = start_agent(tmp, "--max-upload-mb", "1")
    yield url, tmp / "agent"
    proc.terminate()
    proc.wait(timeout=10)


def test_the_agent_measures_as_validation_does_here(agent, model):
    url, folder = agent
    path, x, y = model
    reference = onnx_logits(path, x).argmax(1)
    remote = measure_remote(url, TOKEN, path, x, y, SPEC, reference=reference)
    local = measure_on_device(path, x, y, SPEC, reference=reference)
    assert "error" not in remote and remote["device_agent"] == url
    for key in ("accuracy", "agreement_with_reference", "model_bytes", "model_gzip_bytes", "test_samples"):
        assert remote[key] == local[key], key
    assert remote["agreement_with_reference"] == 100.0
    assert remote["latency_p99_ms"] > 0 and remote["peak_rss_mb"] > 10 and remote["load_ms"] > 0
    assert list(folder.iterdir()) == []  # the model was written inside its folder and removed


def test_a_wrong_or_missing_token_is_refused(agent, model):
    url, folder = agent
    path, x, y = model
    out = measure_remote(url, "not-the-token-at-all", path, x, y, SPEC)
    assert "HTTP 401" in out["error"] and "accuracy" not in out
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 401
    conn.request("GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    health = json.loads(conn.getresponse().read())
    assert health["runtimes"]["onnxruntime"] == "available" and "tensorrt" in health["runtimes"]
    assert list(folder.iterdir()) == []


def test_an_oversized_upload_is_refused_before_it_is_read(agent, model):
    url, folder = agent
    path, x, y = model
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    conn.putrequest("POST", "/measure")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()  # no body sent: the answer must come without it
    resp = conn.getresponse()
    assert resp.status == 413 and "over the agent's limit" in json.loads(resp.read())["error"]
    big_x = np.random.default_rng(0).normal(size=(30_000, 16)).astype(np.float32)  # ~1.9 MB > 1 MB
    for _ in range(20):  # the refusal arrives while the client is still sending: it must read it every time
        out = measure_remote(url, TOKEN, path, big_x, np.zeros(len(big_x), int), SPEC)
        assert "HTTP 413" in out["error"] and "--max-upload-mb" in out["error"], out
        assert out["transient"] == out["error"]  # not a verdict on the model
    assert list(folder.iterdir()) == []


def test_a_malformed_upload_is_a_400_with_the_reason(agent):
    url, _ = agent
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    conn.request("POST", "/measure", body=b"not an npz", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 400 and ".npz" in json.loads(resp.read())["error"]


def test_a_target_with_a_device_is_measured_by_its_agent(agent, model, monkeypatch):
    url, _ = agent
    path, x, y = model
    target = TargetProfile.model_validate({
        "name": "board", "build": {"builder": "ort-fp32"}, "measure": SPEC.model_dump(),
        "device": {"agent": url, "token_env": "BOARD_TOKEN"},
        "budgets": {"max_accuracy_drop": 5, "max_latency_p95_ms": 10, "max_model_bytes": 10**6}})
    monkeypatch.delenv("BOARD_TOKEN", raising=False)
    assert "environment variable BOARD_TOKEN" in measure_target(target, path, x, y, None)["error"]
    monkeypatch.setenv("BOARD_TOKEN", TOKEN)
    out = measure_target(target, path, x, y, None)
    assert out["device_agent"] == url and out["accuracy"] == measure_on_device(path, x, y, SPEC)["accuracy"]


def test_the_agent_will_not_start_with_a_short_token(tmp_path):
    (tmp_path / "token").write_text("short")
    proc = subprocess.run([sys.executable, "-m", "squeezeflow.runtimes.agent", "--port", "0", "--token-file",
                           str(tmp_path / "token"), "--dir", str(tmp_path / "a")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "at least 16 characters" in proc.stderr


def _post(url, body: bytes, **headers):
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", "/measure")
    for k, v in {"Authorization": f"Bearer {TOKEN}", **headers}.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_hostile_uploads_are_refused_and_the_agent_stays_up(agent, model):
    import io

    url, folder = agent
    path, x, y = model
    status, answer = _post(url, b"x" * 4096, **{"Content-Length": "-1"})
    assert status == 400 and "negative" in answer["error"]
    buf = io.BytesIO()  # a compressed archive could inflate past the limit in memory
    np.savez_compressed(buf, model=np.zeros(10, np.uint8), x=x, y=y, request=np.frombuffer(b"{}", np.uint8))
    status, answer = _post(url, buf.getvalue(), **{"Content-Length": str(len(buf.getvalue()))})
    assert status == 400 and "compressed" in answer["error"]
    buf = io.BytesIO()
    np.savez(buf, model=np.frombuffer(path.read_bytes(), np.uint8), x=x, y=y[:3],
             request=np.frombuffer(b"{}", np.uint8))
    status, answer = _post(url, buf.getvalue(), **{"Content-Length": str(len(buf.getvalue()))})
    assert status == 400 and "y N integer labels" in answer["error"]
    # an error inside the agent comes back as a 500 with its reason; the agent keeps serving
    out = measure_remote(url, TOKEN, path, x, y, SPEC, runtime="no-such-runtime")
    assert "error" in out and "accuracy" not in out
    assert "accuracy" in measure_remote(url, TOKEN, path, x, y, SPEC)
    assert list(folder.iterdir()) == []


def test_a_service_that_is_not_the_agent_is_an_error_not_a_crash(model):
    import socket
    import threading

    path, x, y = model
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def banner():
        conn, _ = server.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    threading.Thread(target=banner, daemon=True).start()
    out = measure_remote(f"http://127.0.0.1:{server.getsockname()[1]}", TOKEN, path, x, y, SPEC, timeout_s=10)
    server.close()
    assert "is unreachable or did not answer" in out["error"] or "closed the connection" in out["error"]

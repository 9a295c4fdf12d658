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
from squeezeflow.runtimes.agent_client import measure_remote
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


def start_agent(tmp_path, *extra, pattern="http", preexec_fn=None):
    (tmp_path / "token").write_text(TOKEN + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "squeezeflow.runtimes.agent", "--port", "0", "--token-file",
                             str(tmp_path / "token"), "--dir", str(tmp_path / "agent"), *extra],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, preexec_fn=preexec_fn)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        found = re.search(rf"listening on ({pattern}://127\.0\.0\.1:\d+)", line)
        if found:
            proc.url = found[1]
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


# --- the agent holds its own limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_agent(tmp_path_factory):
    """An agent with small caps, a 2 s request deadline and room for two connections; one folder a killed agent
    left behind is there when it starts."""
    tmp = tmp_path_factory.mktemp("strict")
    (tmp / "agent" / "model-leftover").mkdir(parents=True)
    (tmp / "agent" / "model-leftover" / "model.onnx").write_bytes(b"x" * 100)
    proc, url = start_agent(tmp, "--memory-limit-mb", "768", "--max-timeout-s", "60", "--max-iterations", "40",
                            "--max-batch", "32", "--max-warmup", "3", "--request-deadline-s", "2",
                            "--max-connections", "2")
    yield url, tmp / "agent"
    proc.terminate()
    proc.wait(timeout=10)


def test_the_agents_caps_clip_what_a_client_asks(strict_agent, model):
    url, folder = strict_agent
    path, x, y = model
    assert list(folder.iterdir()) == []  # the killed agent's folder was removed at start
    greedy = MeasureSpec(iterations=500_000, warmup=10_000, throughput_batch=4096, batch_sizes=(8, 4096),
                         timeout_s=86_400, memory_limit_mb=None)
    out = measure_remote(url, TOKEN, path, x, y, greedy)
    assert "accuracy" in out, out
    assert out["agent_limits"] == {"memory_limit_mb": [None, 768], "timeout_s": [86_400.0, 60.0],
                                   "iterations": [500_000, 40], "warmup": [10_000, 3],
                                   "throughput_batch": [4096, 32], "batch_sizes": [[8, 4096], [8, 32]]}
    assert "latency_p95_ms_b32" in out and "latency_p95_ms_b4096" not in out


@pytest.mark.parametrize("runtime, option", [("openvino", "CACHE_DIR"), ("onnxruntime", "session.save_model_format"),
                                             ("onnxruntime", "ep.context_file_path")])
def test_runtime_options_outside_the_allow_list_are_refused(strict_agent, model, runtime, option):
    url, folder = strict_agent
    path, x, y = model
    out = measure_remote(url, TOKEN, path, x, y, SPEC.model_copy(update={"session_options": {option: "/tmp/x"}}),
                         runtime=runtime)
    assert "HTTP 400" in out["error"] and option in out["error"] and out["transient"]
    assert list(folder.iterdir()) == []


def test_a_slow_client_is_dropped_at_the_deadline_and_connections_are_capped(strict_agent):
    import socket

    url, _ = strict_agent
    host, port = url.removeprefix("http://").split(":")
    slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]  # both slots taken
    time.sleep(0.3)
    third = socket.create_connection((host, int(port)), timeout=10)
    assert third.recv(100).startswith(b"HTTP/1.1 503")  # over the cap: answered at once, closed
    t0 = time.monotonic()
    dropped = None
    for byte in b"POST /measure HTTP/1.1\r\n" * 4:  # one byte every 0.25 s: never a stall long enough to time out
        try:
            slow[0].sendall(bytes([byte]))
        except OSError:
            dropped = time.monotonic() - t0
            break
        time.sleep(0.25)
    assert dropped is not None and dropped < 6, dropped  # the 2 s deadline for the whole request, not 30 s a stall
    for s in slow:
        s.close()
    time.sleep(0.5)
    status, _ = _get_health(url)
    assert status == 200  # the slots came back


def _get_health(url):
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    conn.request("GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _self_signed(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "squeezeflow test agent")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_https_with_a_verifying_client(tmp_path, model):
    path, x, y = model
    cert, key = _self_signed(tmp_path)
    proc, _ = start_agent(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), pattern="https")
    try:
        url = proc.url
        out = measure_remote(url, TOKEN, path, x, y, SPEC, ca_file=cert)
        assert "accuracy" in out and out["device_agent"].startswith("https://"), out
        refused = measure_remote(url, TOKEN, path, x, y, SPEC)  # no CA file: the self-signed agent is not trusted
        assert "CERTIFICATE_VERIFY_FAILED" in refused["error"] and refused["transient"]
        clear = measure_remote(url.replace("https://", "http://"), TOKEN, path, x, y, SPEC, timeout_s=10)
        assert "accuracy" not in clear and clear["transient"]  # no plain-HTTP fallback
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_token_never_goes_to_another_machine_in_clear():
    from pydantic import ValidationError

    from squeezeflow.targets import DeviceSpec

    assert DeviceSpec(agent="http://127.0.0.1:8765").agent  # this machine: fine
    with pytest.raises(ValidationError, match="plain http would send the token in clear"):
        DeviceSpec(agent="http://board.local:8765")
    assert DeviceSpec(agent="http://board.local:8765", insecure_http=True).insecure_http
    assert DeviceSpec(agent="https://board.local:8765", ca_file="ca.pem").ca_file == "ca.pem"


def test_the_engine_a_tensorrt_target_runs_travels_with_its_model(agent, tmp_path, model):
    """The client sends the files the runtime loads beside the model (TensorRT's model.plan); the agent writes only
    the ones that runtime declares."""
    import io

    from squeezeflow.runtimes.agent import AgentError, parse_body, write_upload

    url, folder = agent
    path, x, y = model
    built = tmp_path / "build" / "model.onnx"
    built.parent.mkdir()
    built.write_bytes(path.read_bytes())
    built.with_suffix(".plan").write_bytes(b"engine" * 10)
    out = measure_remote(url, TOKEN, built, x, y, SPEC, runtime="tensorrt")
    assert out["agent_files"] == ["model.onnx", "model.plan"]  # unavailable on this machine, but received whole
    assert "onnxruntime" not in out["agent_files"] and list(folder.iterdir()) == []
    assert measure_remote(url, TOKEN, built, x, y, SPEC)["agent_files"] == ["model.onnx"]  # ORT loads no engine
    buf = io.BytesIO()
    np.savez(buf, model=np.zeros(3, np.uint8), x=x, y=y, request=np.frombuffer(b"{}", np.uint8),
             **{"companion.plan": np.zeros(3, np.uint8)})
    with pytest.raises(AgentError, match="onnxruntime loads no such file"):
        write_upload(tmp_path, parse_body(buf.getvalue()), "onnxruntime")


def test_sigterm_stops_the_agent_even_when_its_parent_ignored_it(tmp_path):
    """A parent that ran Dagster in a background job has SIGTERM ignored (Dagster maps it to SIGINT's handler, which
    a background job ignores), and an ignored signal survives exec: the agent sets its own handler."""
    import signal

    proc, _ = start_agent(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    proc.terminate()
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()

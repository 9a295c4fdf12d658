"""The device agent's client: sends a model and the evaluation data to `squeezeflow agent` (runtimes/agent.py) on
the target device and returns its metrics. Over HTTPS it verifies the agent's certificate (the target's
`device.ca_file`, or the system's CAs); plain HTTP is for an agent on this machine only, unless the target says
`insecure_http: true`, so a token never crosses a network in clear."""

from __future__ import annotations

import http.client
import io
import json
import ssl
from pathlib import Path

import numpy as np


def measure_remote(url: str, token: str, model_path: Path, x: np.ndarray, y: np.ndarray, spec,
                   runtime: str = "onnxruntime", reference: np.ndarray | None = None, timeout_s: float = 900,
                   ca_file: str | Path | None = None) -> dict:
    """The client: send the model and the evaluation data to the agent at `url`, return its metrics. The agent's
    own verdict on the model (it measured it, or its runtime failed on it) comes back as metrics, possibly with an
    `error`; anything that says nothing about the model (unreachable, refused, timed out) comes back as
    {"error": reason, "transient": reason}: not a verdict, so validation fails and nothing is registered."""
    request = json.dumps({"spec": spec.model_dump(mode="json"), "runtime": runtime}).encode()
    from squeezeflow.runtimes.engines import companion_files

    buf = io.BytesIO()
    companions = {f"companion{p.suffix}": np.frombuffer(p.read_bytes(), np.uint8)
                  for p in companion_files(runtime, model_path)}  # e.g. the TensorRT engine the target runs
    np.savez(buf, model=np.frombuffer(Path(model_path).read_bytes(), np.uint8), x=x, y=y,
             request=np.frombuffer(request, np.uint8), **({} if reference is None else {"reference": reference}),
             **companions)
    try:
        status, answer = _post(url, "/measure", buf.getvalue(), token, timeout_s, ca_file)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return _transient(f"the device agent at {url} is unreachable or did not answer: {type(exc).__name__}: "
                          f"{getattr(exc, 'reason', exc)}")
    if status != 200:
        detail = answer.get("error", "no reason given") if isinstance(answer, dict) else "no reason given"
        return _transient(f"the device agent at {url} refused the model (HTTP {status}): {detail}")
    if not isinstance(answer, dict):
        return _transient(f"the device agent at {url} answered something other than a metrics object")
    return {**answer, "device_agent": url}


def _transient(reason: str) -> dict:
    return {"error": reason, "transient": reason}


def _post(url: str, path: str, body: bytes, token: str, timeout_s: float,
          ca_file: str | Path | None = None) -> tuple[int, object]:
    """POST the body and read the answer, also when the agent answered before the whole body was sent (a refusal:
    the pipe breaks while sending, but the answer is already on its way)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(Path(ca_file).expanduser()) if ca_file else None)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    try:
        conn.putrequest("POST", parts.path.rstrip("/") + path)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            view = memoryview(body)
            for start in range(0, len(body), 1 << 20):
                conn.send(view[start:start + (1 << 20)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent stopped reading: its answer says why
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data or b"{}")
        except ValueError:
            return resp.status, {"error": f"not JSON: {data[:200]!r}"}
    finally:
        conn.close()



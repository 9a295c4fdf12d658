"""The device agent: runs on the target device and measures models sent to it, the same way validation measures
here (a constrained process of its own per model, `measure_isolated`), returning the same metrics JSON.

    squeezeflow agent --host 127.0.0.1 --port 8765 --token-file ~/.squeezeflow-agent-token [--dir DIR]
    python -m squeezeflow.runtimes.agent ...        (the same, on a device with only numpy, pydantic and the runtime)

One endpoint, `POST /measure`, body: an .npz (no pickles) with `model` (the file's bytes as uint8), `x`, `y`,
optionally `reference` (the reference model's predicted classes) and `request` (UTF-8 JSON: `spec`, the target's
`measure:` section, and `runtime`). `GET /health` lists the runtimes available on the device. Every request needs
`Authorization: Bearer <token>` (401 otherwise); a body over the size limit is refused before it is read (413).
The agent writes only inside its own folder: each model in a fresh subfolder there, removed after measuring.
Python's standard HTTP server serves it: an agent measures one model at a time (a lock), like a device would.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

MAX_UPLOAD_MB = 256
LINGER_S = 5.0  # how long a refused upload is drained before the connection closes


class AgentError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_token(path: Path) -> str:
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path}: the token must be at least 16 characters")
    return token


def _check_members(body: bytes, max_bytes: int) -> None:
    """An .npz is a zip: only stored (uncompressed) members, their total within the limit, so nothing inflates
    past it in memory (a compressed member can grow a thousandfold)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise AgentError(400, "the body is not an .npz archive (np.savez)") from None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise AgentError(400, "compressed .npz members are refused: send np.savez, not np.savez_compressed")
    if sum(i.file_size for i in infos) > max_bytes:
        raise AgentError(413, f"the archive's members exceed the agent's limit of {max_bytes} bytes")


def parse_body(body: bytes, max_bytes: int | None = None) -> dict:
    """The upload as arrays; a malformed one is a 400 with the reason."""
    _check_members(body, len(body) if max_bytes is None else max_bytes)
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the client's error
        raise AgentError(400, f"the body is not an .npz archive without pickles ({type(exc).__name__})") from None
    missing = [k for k in ("model", "x", "y", "request") if k not in arrays]
    if missing:
        raise AgentError(400, f"the upload lacks {', '.join(missing)}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or not len(y) or x.dtype.kind not in "fiu" \
            or y.dtype.kind not in "iu":
        raise AgentError(400, f"x must be numeric N x ... and y N integer labels (got x {x.shape} {x.dtype}, "
                              f"y {y.shape} {y.dtype})")
    if "reference" in arrays and arrays["reference"].shape != y.shape:
        raise AgentError(400, f"reference must have y's shape {y.shape} (got {arrays['reference'].shape})")
    try:
        request = json.loads(arrays["request"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AgentError(400, f"'request' is not UTF-8 JSON: {exc}") from None
    if not isinstance(request, dict):
        raise AgentError(400, "'request' must be a JSON object")
    return {**arrays, "request": request}


def measure_upload(folder: Path, upload: dict) -> dict:
    """Write the model into a fresh subfolder of the agent's folder, measure it there, remove it."""
    from pydantic import ValidationError

    from squeezeflow.runtimes.measure import MeasureSpec, measure_on_device

    request = upload["request"]
    try:
        spec = MeasureSpec.model_validate(request.get("spec", {}))
    except ValidationError as exc:
        raise AgentError(400, f"'request.spec' is not a valid measure section: {exc.errors()[0]['msg']}") from None
    runtime = str(request.get("runtime", "onnxruntime"))
    with tempfile.TemporaryDirectory(dir=folder, prefix="model-") as tmp:
        model = Path(tmp) / "model.onnx"
        model.write_bytes(upload["model"].astype(np.uint8).tobytes())
        spec = spec.model_copy(update={"isolated": True})  # the device's constraints apply to every measurement
        return measure_on_device(model, upload["x"], upload["y"], spec, runtime, upload.get("reference"))


def make_handler(token: str, folder: Path, max_bytes: int):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "squeezeflow-agent"
        timeout = 60  # seconds a client may stall mid-request before its connection is dropped

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

        def do_GET(self):  # noqa: N802 - http.server's naming
            if not self._authorized():
                return self._reply(401, {"error": "missing or wrong token"})
            if self.path != "/health":
                return self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
            from squeezeflow.runtimes.engines import ENGINES, engine_unavailable

            return self._reply(200, {"status": "ok", "runtimes": {n: engine_unavailable(n) or "available"
                                                                  for n in sorted(ENGINES)}})

        def _refuse_unread(self, status: int, payload: dict) -> None:
            """Answer before reading the body, then drain what the client still sends for a moment before
            closing: closing with unread data would reset the connection, and the client would lose the answer."""
            self.close_connection = True  # a body left unread must not be parsed as the next request
            self._reply(status, payload)
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(0.5)
                deadline = time.monotonic() + LINGER_S
                while time.monotonic() < deadline and self.connection.recv(1 << 16):
                    pass
            except OSError:
                pass

        def do_POST(self):  # noqa: N802
            if not self._authorized():
                return self._refuse_unread(401, {"error": "missing or wrong token"})
            if self.path != "/measure":
                return self._refuse_unread(404, {"error": f"no such endpoint: POST {self.path}"})
            self.close_connection = True
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._refuse_unread(411, {"error": "a Content-Length is required"})
            if length < 0:
                return self._refuse_unread(400, {"error": f"Content-Length {length} is negative"})
            if length > max_bytes:
                return self._refuse_unread(413, {"error": f"upload of {length} bytes is over the agent's limit of "
                                                          f"{max_bytes} bytes (--max-upload-mb)"})
            try:
                body = self.rfile.read(length)
                if len(body) != length:
                    return self._reply(400, {"error": f"the body ended after {len(body)} of {length} bytes"})
                upload = parse_body(body, max_bytes)
                with lock:
                    return self._reply(200, measure_upload(folder, upload))
            except AgentError as exc:
                return self._reply(exc.status, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, the agent stays up
                return self._reply(500, {"error": f"the agent failed: {type(exc).__name__}: "
                                                  f"{' '.join(str(exc).split())[:300]}"})

        def log_message(self, fmt, *args):  # one line per request on stderr, without the body
            sys.stderr.write(f"squeezeflow agent: {self.address_string()} {fmt % args}\n")

    return Handler


def serve(host: str, port: int, token_file: Path, folder: Path, max_upload_mb: float = MAX_UPLOAD_MB,
          ready=None) -> None:
    token = read_token(token_file)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)  # nothing the agent or its runtimes write can land outside its folder by a relative path
    tempfile.tempdir = str(folder)  # the measuring process's request and data files too
    server = ThreadingHTTPServer((host, port), make_handler(token, folder, int(max_upload_mb * 1024 * 1024)))
    print(f"squeezeflow agent: listening on http://{host}:{server.server_address[1]} (folder {folder})",
          file=sys.stderr, flush=True)
    if ready:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def measure_remote(url: str, token: str, model_path: Path, x: np.ndarray, y: np.ndarray, spec,
                   runtime: str = "onnxruntime", reference: np.ndarray | None = None, timeout_s: float = 900) -> dict:
    """The client: send the model and the evaluation data to the agent at `url`, return its metrics. The agent's
    own verdict on the model (it measured it, or its runtime failed on it) comes back as metrics, possibly with an
    `error`; anything that says nothing about the model (unreachable, refused, timed out) comes back as
    {"error": reason, "transient": reason}: not a verdict, so validation fails and nothing is registered."""
    request = json.dumps({"spec": spec.model_dump(mode="json"), "runtime": runtime}).encode()
    buf = io.BytesIO()
    np.savez(buf, model=np.frombuffer(Path(model_path).read_bytes(), np.uint8), x=x, y=y,
             request=np.frombuffer(request, np.uint8), **({} if reference is None else {"reference": reference}))
    try:
        status, answer = _post(url, "/measure", buf.getvalue(), token, timeout_s)
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


def _post(url: str, path: str, body: bytes, token: str, timeout_s: float) -> tuple[int, object]:
    """POST the body and read the answer, also when the agent answered before the whole body was sent (a refusal:
    the pipe breaks while sending, but the answer is already on its way)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token-file", required=True, type=Path, help="file holding the shared token (16+ characters)")
    p.add_argument("--dir", type=Path, default=Path("squeezeflow-agent"), help="the agent's own folder")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest request body accepted")


def run(args: argparse.Namespace) -> int:
    try:
        serve(args.host, args.port, args.token_file, args.dir, args.max_upload_mb)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="squeezeflow agent", description="measure models on this device for squeezeflow")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""The device agent: runs on the target device and measures models sent to it, the same way validation measures
here (a constrained process of its own per model, `measure_isolated`), returning the same metrics JSON.

    squeezeflow agent --host 127.0.0.1 --port 8765 --token-file ~/.squeezeflow-agent-token [--dir DIR]
    python -m squeezeflow.runtimes.agent ...        (the same, on a device with only numpy, pydantic and the runtime)

One endpoint, `POST /measure`, body: an .npz (no pickles) with `model` (the file's bytes as uint8), `x`, `y`,
optionally `reference` (the reference model's predicted classes), `companion<suffix>` (a file the runtime loads
beside the model, such as TensorRT's `.plan`) and `request` (UTF-8 JSON: `spec`, the target's `measure:` section,
and `runtime`). `GET /health` lists the runtimes available on the device. Every request needs
`Authorization: Bearer <token>` (401 otherwise); a body over the size limit is refused before it is read (413).
The agent holds its own limits (`Limits`): its caps clip what a client asks (memory, timeout, batch, iterations,
warm-up), runtime options come from each runtime's allow-list, a whole request must arrive by a deadline, and at
most N requests are served at once (503 beyond). With `--tls-cert` it serves HTTPS. It writes only inside its own
folder: each model in a fresh subfolder there, removed after measuring (and at start, after a kill). Python's
standard HTTP server serves it: an agent measures one model at a time (a lock), like a device would.
"""

from __future__ import annotations

import argparse
import hmac
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Limits:
    """What the agent allows, whatever a client asks: its caps clip the client's measure section, its memory cap
    applies to every measurement, and a request must arrive within its deadline."""

    max_bytes: int = MAX_UPLOAD_MB * 1024 * 1024
    memory_limit_mb: int = 4096
    max_timeout_s: float = 600.0
    max_batch: int = 1024
    max_iterations: int = 5000
    max_warmup: int = 200
    request_deadline_s: float = 120.0
    max_connections: int = 8


def clip_spec(spec, runtime: str, limits: Limits):
    """The client's measure section under the agent's caps, and what was clipped ({field: [asked, applied]}).
    Runtime options outside the engine's allow-list are refused (400): one naming a path could write anywhere."""
    from squeezeflow.runtimes.engines import load_runtimes

    runtimes = load_runtimes()
    if runtime not in runtimes:
        raise AgentError(400, f"'request.runtime' = {runtime!r}: unknown runtime; known: {sorted(runtimes)}")
    unsafe = sorted(set(spec.session_options) - runtimes[runtime].safe_options)
    if unsafe:
        raise AgentError(400, f"'request.spec.session_options': {unsafe} not accepted by this agent for {runtime} "
                              f"(accepted: {sorted(runtimes[runtime].safe_options)})")
    applied = {
        "memory_limit_mb": min(spec.memory_limit_mb or limits.memory_limit_mb, limits.memory_limit_mb),
        "timeout_s": min(spec.timeout_s, limits.max_timeout_s),
        "throughput_batch": min(spec.throughput_batch, limits.max_batch),
        "batch_sizes": tuple(sorted({min(b, limits.max_batch) for b in spec.batch_sizes})),
        "iterations": min(spec.iterations, limits.max_iterations),
        "warmup": min(spec.warmup, limits.max_warmup),
        "isolated": True,  # the device's constraints apply to every measurement
    }
    clipped = {k: [getattr(spec, k), v] for k, v in applied.items()
               if k != "isolated" and getattr(spec, k) != v and k != "batch_sizes" or
               (k == "batch_sizes" and tuple(spec.batch_sizes) != v)}
    return spec.model_copy(update=applied), clipped


def measure_upload(folder: Path, upload: dict, limits: Limits = Limits()) -> dict:
    """Write the model into a fresh subfolder of the agent's folder, measure it there under the agent's limits,
    remove it."""
    from pydantic import ValidationError

    from squeezeflow.runtimes.measure import MeasureSpec, measure_on_device

    request = upload["request"]
    try:
        spec = MeasureSpec.model_validate(request.get("spec", {}))
    except ValidationError as exc:
        raise AgentError(400, f"'request.spec' is not a valid measure section: {exc.errors()[0]['msg']}") from None
    runtime = str(request.get("runtime", "onnxruntime"))
    spec, clipped = clip_spec(spec, runtime, limits)
    with tempfile.TemporaryDirectory(dir=folder, prefix="model-") as tmp:
        model = write_upload(Path(tmp), upload, runtime)
        received = sorted(p.name for p in Path(tmp).iterdir())
        result = measure_on_device(model, upload["x"], upload["y"], spec, runtime, upload.get("reference"))
    return {**result, "agent_files": received, **({"agent_limits": clipped} if clipped else {})}


def write_upload(folder: Path, upload: dict, runtime: str) -> Path:
    """The model as `model.onnx` in `folder`, and each `companion<suffix>` member (a TensorRT engine) beside it as
    `model<suffix>`: only the suffixes the runtime declares."""
    from squeezeflow.runtimes.engines import load_runtimes

    model = folder / "model.onnx"
    model.write_bytes(upload["model"].astype(np.uint8).tobytes())
    runtimes = load_runtimes()
    allowed = runtimes[runtime].companions if runtime in runtimes else ()
    for key, data in upload.items():
        if key.startswith("companion"):
            suffix = key.removeprefix("companion")
            if suffix not in allowed:
                raise AgentError(400, f"'{key}': {runtime} loads no such file beside its model (it loads: "
                                      f"{', '.join('model' + a for a in allowed) or 'nothing'})")
            model.with_suffix(suffix).write_bytes(data.astype(np.uint8).tobytes())
    return model


def make_handler(token: str, folder: Path, limits: Limits):
    measuring, receiving = threading.Lock(), threading.Lock()
    max_bytes = limits.max_bytes

    class Handler(BaseHTTPRequestHandler):
        server_version = "squeezeflow-agent"
        timeout = 30  # seconds a client may stall between two reads

        def setup(self):
            # The whole request (TLS handshake, headers, body) must arrive by the deadline: a client sending one
            # byte every few seconds would otherwise hold a thread forever.
            self._deadline = threading.Timer(limits.request_deadline_s, self._expire)
            self._deadline.daemon = True
            self._deadline.start()
            super().setup()

        def _expire(self):
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def finish(self):
            self._deadline.cancel()
            try:
                super().finish()
            except OSError:
                pass

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
            self._deadline.cancel()
            if not self._authorized():
                return self._reply(401, {"error": "missing or wrong token"})
            if self.path != "/health":
                return self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
            from squeezeflow.runtimes.engines import engine_unavailable, load_runtimes

            return self._reply(200, {"status": "ok", "runtimes": {n: engine_unavailable(n) or "available"
                                                                  for n in sorted(load_runtimes())},
                                     "limits": asdict(limits)})

        def _refuse_unread(self, status: int, payload: dict) -> None:
            """Answer before reading the body, then drain what the client still sends for a moment before
            closing: closing with unread data would reset the connection, and the client would lose the answer."""
            self._deadline.cancel()
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
                with receiving:  # one body in memory at a time: memory stays within about twice the upload limit
                    body = self.rfile.read(length)
                    self._deadline.cancel()
                    if len(body) != length:
                        return self._reply(400, {"error": f"the body ended after {len(body)} of {length} bytes "
                                                          "(or it did not arrive within the agent's deadline)"})
                    upload = parse_body(body, max_bytes)
                    del body
                with measuring:
                    return self._reply(200, measure_upload(folder, upload, limits))
            except AgentError as exc:
                return self._reply(exc.status, {"error": str(exc)})
            except OSError:
                return None  # the connection is gone (the deadline, or the client left)
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, the agent stays up
                return self._reply(500, {"error": f"the agent failed: {type(exc).__name__}: "
                                                  f"{' '.join(str(exc).split())[:300]}"})

        def log_message(self, fmt, *args):  # one line per request on stderr, without the body
            sys.stderr.write(f"squeezeflow agent: {self.address_string()} {fmt % args}\n")

    return Handler


class AgentServer(ThreadingHTTPServer):
    """At most `max_connections` requests at once; one more is answered 503 and closed at once."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int, tls=None):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        if tls is not None:  # the handshake happens in the request's thread, under its deadline
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (OSError, ValueError):
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def remove_leftovers(folder: Path) -> list[str]:
    """The model and measurement folders a killed agent left behind."""
    gone = []
    for p in folder.iterdir():
        if p.is_dir() and p.name.startswith(("model-", "sf-measure-")):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def serve(host: str, port: int, token_file: Path, folder: Path, limits: Limits = Limits(),
          tls_cert: Path | None = None, tls_key: Path | None = None, ready=None) -> None:
    token = read_token(token_file)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tls = None
    if tls_cert:
        import ssl

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(Path(tls_cert).resolve()), str(Path(tls_key).resolve()) if tls_key else None)
    os.chdir(folder)  # nothing the agent or its runtimes write can land outside its folder by a relative path
    tempfile.tempdir = str(folder)  # the measuring process's request and data files too
    gone = remove_leftovers(folder)
    server = AgentServer((host, port), make_handler(token, folder, limits), limits.max_connections, tls)
    # SIGTERM (a service manager, `kill`, Kubernetes) stops it cleanly, whatever the parent left: Dagster maps
    # SIGTERM to SIGINT's handler, which a background job ignores, and an ignored signal is inherited across exec.
    # Set before the line saying it listens: a supervisor may stop it as soon as it reads that line.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    scheme = "https" if tls else "http"
    try:
        print(f"squeezeflow agent: listening on {scheme}://{host}:{server.server_address[1]} (folder {folder}"
              + (f"; removed {len(gone)} folder(s) a killed agent left" if gone else "") + ")",
              file=sys.stderr, flush=True)
        if ready:
            ready(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _stop(_signo, _frame) -> None:
    raise KeyboardInterrupt


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token-file", required=True, type=Path, help="file holding the shared token (16+ characters)")
    p.add_argument("--dir", type=Path, default=Path("squeezeflow-agent"), help="the agent's own folder")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM; the chain after it)")
    p.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM), if not in --tls-cert")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest request body accepted")
    p.add_argument("--memory-limit-mb", type=int, default=d.memory_limit_mb,
                   help="address-space cap of every measuring process (a client's larger or missing cap is clipped)")
    p.add_argument("--max-timeout-s", type=float, default=d.max_timeout_s, help="longest measurement allowed")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="largest batch a client may ask for")
    p.add_argument("--max-iterations", type=int, default=d.max_iterations, help="most timed calls per measurement")
    p.add_argument("--max-warmup", type=int, default=d.max_warmup, help="most warm-up calls per measurement")
    p.add_argument("--request-deadline-s", type=float, default=d.request_deadline_s,
                   help="a request (handshake, headers, body) must arrive within this")
    p.add_argument("--max-connections", type=int, default=d.max_connections, help="requests served at once")


def run(args: argparse.Namespace) -> int:
    if bool(args.tls_key) and not args.tls_cert:
        print("error: --tls-key needs --tls-cert", file=sys.stderr)
        return 2
    limits = Limits(int(args.max_upload_mb * 1024 * 1024), args.memory_limit_mb, args.max_timeout_s, args.max_batch,
                    args.max_iterations, args.max_warmup, args.request_deadline_s, args.max_connections)
    try:
        serve(args.host, args.port, args.token_file, args.dir, limits, args.tls_cert, args.tls_key)
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

"""Notifications: one JSON message per run, target and event, POSTed to a webhook (config: params.yaml `notify`).

The body carries a Slack-compatible `text` line and the fields a receiver can act on (event, target, model, version,
reason, run). A transient error (connection, timeout, HTTP 429 or 5xx) is retried with backoff; whatever happens,
`send` never raises: a notification must not fail or change the run it reports on. Each (run, target, event) is
sent at most once, across processes and step retries: a record under the workspace's state folder claims it first
and keeps the outcome.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from squeezeflow.config import NotifyParams

EVENTS = ("promoted", "held_back", "failed", "unavailable")
ICONS = {"promoted": ":white_check_mark:", "held_back": ":warning:", "failed": ":x:", "unavailable": ":fast_forward:"}


@dataclass(frozen=True)
class Event:
    kind: str  # one of EVENTS
    target: str
    run_id: str
    model_name: str = ""
    version: str = ""
    alias: str = ""  # promoted: champion | challenger
    reason: str = ""  # held_back, failed, unavailable: why, in the CLI's words
    step: str = ""  # failed: the step that broke

    def __post_init__(self):
        if self.kind not in EVENTS:
            raise ValueError(f"unknown event {self.kind!r}; known: {', '.join(EVENTS)}")


def text(event: Event, run_url: str = "") -> str:
    """One line a person reads in a chat channel."""
    model = f"{event.model_name} v{event.version}" if event.version else event.model_name or event.target
    run = f"<{run_url}|run {event.run_id[:8]}>" if run_url else f"run {event.run_id[:8]}"
    what = {"promoted": f"{model} is the new {event.alias or 'champion'} on {event.target}",
            "held_back": f"{model} held back on {event.target}: {event.reason}",
            "failed": f"{event.target} failed" + (f" at {event.step}" if event.step else "") + f": {event.reason}",
            "unavailable": f"{event.target} skipped: {event.reason}"}[event.kind]
    return f"{ICONS[event.kind]} squeezeflow: {what} ({run})"


def body(event: Event, workspace: str = "", dagster_url: str | None = None) -> dict:
    run_url = f"{dagster_url.rstrip('/')}/runs/{event.run_id}" if dagster_url else ""
    return {"text": text(event, run_url)[:3000], "event": event.kind, **asdict(event), "workspace": workspace,
            "dagster_run_url": run_url}


def _transient(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, OSError))


def post(url: str, payload: dict, retries: int, backoff_s: float, timeout_s: float) -> tuple[bool, int, str]:
    """(delivered, attempts, last error). Retries only what may pass on a second try."""
    data = json.dumps(payload).encode()
    last = ""
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "squeezeflow"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return True, attempt, ""
        except Exception as exc:  # noqa: BLE001 - reported, never raised
            last = f"{type(exc).__name__}: {exc}"
            if not _transient(exc) or attempt > retries:
                return False, attempt, last
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return False, retries + 1, last


class Notifier:
    def __init__(self, config: NotifyParams, record_dir: Path, workspace: str = ""):
        self.config, self.record_dir, self.workspace = config, Path(record_dir), workspace

    @property
    def url(self) -> str | None:
        return os.environ.get(self.config.webhook_env) or self.config.webhook_url

    def _claim(self, event: Event) -> Path | None:
        """The record of this (run, target, event), created only if absent: None when it was claimed before."""
        path = self.record_dir / event.run_id / f"{event.target}.{event.kind}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return None
        os.close(fd)
        return path

    def send(self, event: Event, log: Callable[[str], None] = print) -> bool:
        """True when delivered; never raises."""
        try:
            url = self.url
            if not url or event.kind not in self.config.events:
                return False
            if not url.startswith(("http://", "https://")):
                log(f"notification not sent: ${self.config.webhook_env} = {url[:60]!r} is not an http(s) URL")
                return False
            record = self._claim(event)
            if record is None:
                return False  # already sent (or being sent) for this run, target and event
            payload = body(event, self.workspace, self.config.dagster_url)
            ok, attempts, error = post(url, payload, self.config.retries, self.config.backoff_s, self.config.timeout_s)
            record.write_text(json.dumps({"delivered": ok, "attempts": attempts, "error": error, "body": payload}))
            if not ok:
                log(f"notification '{event.kind}' for {event.target} not delivered after {attempts} attempt(s): "
                    f"{error} (the run is unaffected)")
            return ok
        except Exception as exc:  # noqa: BLE001 - a notification never fails the run
            log(f"notification '{event.kind}' for {event.target} not sent: {type(exc).__name__}: {exc}")
            return False

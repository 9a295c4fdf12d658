"""One run per workspace at a time, and recovery from a run that was killed while it held the workspace.

The lock is an `flock` on `.squeezeflow/locks/workspace.lock`: the kernel drops it when its process dies, so a
lock can never be left stale by `kill -9`. Beside it, `workspace.json` names the holder (pid, run, command). A
holder that exits normally removes it; if it is still there when the lock is next taken, its holder crashed and
the new holder cleans up after it (temp folders, runs left RUNNING) before doing anything else.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = "workspace.lock"
HOLDER_FILE = "workspace.json"


class WorkspaceBusy(RuntimeError):
    """Raised instead of waiting, where waiting could deadlock (a stage run by `dvc repro`)."""


@dataclass
class Held:
    """What the current holder knows: the crashed holder it took over from (if any) and what it cleaned."""

    holder_path: Path
    info: dict
    crashed: dict | None = None
    recovered: bool = False  # the clean-up after `crashed` is done once, by whoever holds the lock first

    def update(self, **info) -> None:
        self.info.update(info)
        _write_holder(self.holder_path, self.info)


# Re-entrant within a process: the CLI takes the lock before it opens the Dagster instance, then the run's
# resource takes it again. A second flock on a new descriptor in the same process would block forever.
_HELD: dict[str, tuple[int, int, Held]] = {}


def describe(info: dict | None) -> str:
    if not info:
        return "another run (no details recorded)"
    run = info.get("dagster_run_id") or info.get("command") or "?"
    return f"run {run} (pid {info.get('pid', '?')}, {info.get('command', '?')}, since {info.get('started_at', '?')})"


def read_holder(locks_dir: Path) -> dict | None:
    try:
        return json.loads((Path(locks_dir) / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_holder(path: Path, info: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, path)


@contextmanager
def workspace_lock(locks_dir: Path, command: str, wait: bool = True, say: Callable[[str], None] = print,
                   poll_s: float = 0.5) -> Iterator[Held]:
    """Hold the workspace for this block. Waits (saying for whom, once per holder) or raises WorkspaceBusy."""
    locks_dir = Path(locks_dir)
    key = str(locks_dir.resolve())
    if key in _HELD:
        fd, depth, held = _HELD[key]
        _HELD[key] = (fd, depth + 1, held)
        try:
            yield held
        finally:
            fd, depth, held = _HELD[key]
            _HELD[key] = (fd, depth - 1, held)
        return
    locks_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(locks_dir)
                if not wait:
                    raise WorkspaceBusy(f"workspace busy: {describe(holder)} holds {locks_dir.parent.parent}") from None
                if holder != told:
                    say(f"squeezeflow: waiting for {describe(holder)} to finish (one run per workspace)")
                    told = holder
                time.sleep(poll_s)
        holder_path = locks_dir / HOLDER_FILE
        crashed = read_holder(locks_dir) if holder_path.exists() else None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        held = Held(holder_path, info, crashed)
        _write_holder(holder_path, info)
        _HELD[key] = (fd, 1, held)
        try:
            yield held
        finally:
            del _HELD[key]
            holder_path.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_temp_files(root: Path, artifacts: Path, state: Path) -> list[str]:
    """Half-written outputs of a killed run, by the names squeezeflow.io and the gate give them: temp stage
    folders (`artifacts/.<stage>.*`, `.squeezeflow/.champion-*`) and temp files (`.<name>.*.tmp`). A complete
    output a kill left renamed aside (`.<stage>.old-*`) goes back into place when its replacement never arrived:
    recovery never deletes a complete output."""
    from squeezeflow.io import ASIDE

    found: list[Path] = []
    restored: list[str] = []
    for d in (artifacts, state):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_dir() and ASIDE in p.name and p.name.startswith("."):
                    home = p.with_name(p.name[1:].split(ASIDE)[0])
                    if not home.exists():
                        os.replace(p, home)
                        restored.append(f"{os.path.relpath(home, root)} (put back)")
                        continue
            found += [p for p in d.iterdir() if p.is_dir() and p.name.startswith(".") and "." in p.name[1:]]
    found += [p for p in Path(root).glob(".*.tmp") if p.is_file()]
    for d in (artifacts, state):
        if d.is_dir():
            found += [p for p in d.rglob(".*.tmp") if p.is_file() and not any(q in found for q in p.parents)]
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return sorted(os.path.relpath(p, root) for p in found) + restored

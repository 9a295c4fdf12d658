"""Resident memory of this process: its high-water mark, and the peak over one stretch of work (a stage).

Imports nothing heavy: the measuring worker (runtimes/worker.py) uses it too."""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark since it started or since `reset_peak`. VmHWM, not
    getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so it would report the (large) pipeline process a
    worker was forked from."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB


def rss_mb() -> float:
    return _status_mb("VmRSS") or 0.0


def reset_peak() -> bool:
    """Start the high-water mark again from the current RSS (Linux: `5` to /proc/self/clear_refs)."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


class StagePeak:
    """`with StagePeak() as mem: ...` then `mem.peak_mb` (the highest RSS inside the block, this process only)
    and `mem.start_mb` (the RSS when it began: what the process held already)."""

    def __enter__(self) -> StagePeak:
        self.start_mb, self.peak_mb = rss_mb(), 0.0
        reset_peak()  # where it cannot (not Linux), the peak is the process's since it started
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = peak_rss_mb()

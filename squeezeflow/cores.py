"""The cores this process is given, and torch's threads set to them.

torch starts one intra-op thread per physical core of the machine. A container given fewer (a CPU quota: docker's
`--cpus`, a Kubernetes limit) or a process pinned to some cores (taskset, a Celery worker's affinity) then runs more
threads than cores, and each training step waits on the slowest of them."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cpu_quota(v2: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2, else v1); None: no quota."""
    try:
        quota, period = v2.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota, period = (int(p.read_text()) for p in v1)
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), within its cgroup's quota."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def use_cores(threads: int | None = None) -> int:
    """torch's intra-op threads: `threads` (params.yaml machine.threads), else every core this process is given."""
    import torch

    n = threads or available_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

"""The measuring process: `python -m squeezeflow.runtimes.worker REQUEST.json`.

Applies the target's constraints to itself (CPU affinity, address-space cap) before it loads the runtime, runs
its task (`measure` one model, or `compare` the champion with a candidate), adds its own peak RSS, and writes
the result JSON. Anything that goes wrong ends the process with a
non-zero code and the reason as the last line on stderr; measure_isolated turns that into a failed gate.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from squeezeflow.memory import peak_rss_mb


def constrain(spec: dict) -> None:
    if spec.get("cpu_affinity"):
        os.sched_setaffinity(0, set(spec["cpu_affinity"]))
    if spec.get("memory_limit_mb"):
        cap = int(spec["memory_limit_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    spec = dict(request["spec"])
    if request.get("models", 1) > 1 and spec.get("memory_limit_mb"):
        spec["memory_limit_mb"] = request["models"] * int(spec["memory_limit_mb"])  # each model within the cap
    constrain(spec)
    try:
        metrics = _task(request.get("task", "measure"))(request)
    except MemoryError:
        print("MemoryError: out of memory", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - the reason goes back to the gate
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 3
    metrics["peak_rss_mb"] = peak_rss_mb()
    metrics["cpus"] = sorted(os.sched_getaffinity(0))
    Path(request["result"]).write_text(json.dumps(metrics))
    return 0


def data(request: dict):
    """The request's x (read by rows), y and optional reference predictions."""
    import numpy as np

    from squeezeflow.rows import ArrayFile

    data = Path(request["data"])
    reference = np.load(data / "reference.npy") if (data / "reference.npy").exists() else None
    return ArrayFile(data / "x.npy"), np.load(data / "y.npy", allow_pickle=False), reference


def measure_task(request: dict) -> dict:
    from squeezeflow.runtimes.measure import MeasureSpec, measure

    x, y, reference = data(request)
    return measure(Path(request["model"]), x, y, MeasureSpec.model_validate(request["spec"]),
                   request.get("runtime", "onnxruntime"), reference)


TASKS = {"measure": measure_task}  # or "package.module:function", for a task of a higher layer (a comparison)


def _task(name: str):
    if name in TASKS:
        return TASKS[name]
    import importlib

    module, _, func = name.partition(":")
    return getattr(importlib.import_module(module), func)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

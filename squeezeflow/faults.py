"""Fault injection at the pipeline's side effects, for the crash tests (tests/pipelines/test_faults.py).

`SQUEEZEFLOW_FAULT=<point>` (or `<point>@<detail>`, e.g. `dvc-committed@validate-cpu-fp32`) kills this process with
SIGKILL the first time it reaches that point: no cleanup, no `finally`, as a power cut or the OOM killer would.
Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SQUEEZEFLOW_FAULT"
POINTS = (
    "stage-aside",  # the old stage output renamed aside, the new one not yet in place
    "stage-swapped",  # the new stage output in place, the old one not yet deleted, nothing committed
    "dvc-committed",  # dvc.lock and the cache updated, nothing pushed
    "dvc-pushing",  # part of a stage's files pushed to the remote
    "version-created",  # the MLflow model version created (with its verdict), its promotion step not run
    "history-pending",  # the champion move recorded as pending, the alias not moved
    "alias-moved",  # the champion alias moved, the version's promotion tags and the record not finished
    "history-done",  # the record done, the version's release not marked done
)


def point(name: str, detail: str = "") -> None:
    wanted = os.environ.get(ENV)
    if wanted and wanted in (name, f"{name}@{detail}"):
        os.kill(os.getpid(), signal.SIGKILL)

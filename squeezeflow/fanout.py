"""One step of a run in a worker's own workspace: how the Celery (and Kubernetes) executors fan a run out.

A step process of the `multiprocess` executor (one machine) takes the first free folder of
`<run's workspace>/.squeezeflow/steps/<n>` instead (`step_slot`), and the run workspace's own DVC remote.

A worker started with `SQUEEZEFLOW_STEP_ROOT=<folder>` (and `SQUEEZEFLOW_DVC_REMOTE` naming a remote every worker
shares) never runs a step in the run's workspace. For each step:

- **checkout**: the run's definition (params.yaml, device_targets/, recipes/) is copied from the run's workspace
  into the worker's folder; relative paths in params.yaml (the user's data, model code, checkpoint) still point
  into the run's workspace (`Workspace.files_root`), so every worker records the same inputs for DVC;
- **pull**: the step's declared inputs come from the shared remote by the content hash their own steps recorded on
  the run's MLflow parent run (`squeezeflow.dvc.<stage>` tags), whichever worker made them;
- **reuse**: a stage whose command, inputs and params DVC's run cache knows (from any worker, pushed to the remote)
  is restored, not computed;
- **push**: before the step ends its output, its run-cache entry and its timings are on the remote.

Registry moves stay in the Dagster pool `squeezeflow-registry` (one at a time on the shared instance).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STEP_ROOT_ENV = "SQUEEZEFLOW_STEP_ROOT"
EXECUTOR_ENV = "SQUEEZEFLOW_EXECUTOR"  # read by pipelines.executors; `multiprocess` steps take a step_slot
CHECKOUT = ("params.yaml", "device_targets", "recipes")  # what defines a run, beside the user's own files


def step_root() -> Path | None:
    """This worker's own workspace folder, when it runs steps of runs whose workspaces are elsewhere."""
    value = os.environ.get(STEP_ROOT_ENV, "").strip()
    return Path(value).resolve() if value else None


@contextmanager
def step_slot(run_root: Path) -> Iterator[Path]:
    """A step workspace for one step process of a multiprocess run: the first free `<run_root>/.squeezeflow/steps/<n>`,
    held (an flock, let go when the process dies however it dies) for as long as the step runs. Slots are reused by
    later steps and runs, so there are never more than the executor's `max_concurrent` and their DVC caches stay
    warm."""
    slots = Path(run_root).resolve() / ".squeezeflow" / "steps"
    slots.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        lock = open(slots / f"{n}.lock", "a")  # noqa: SIM115 - held open for the step's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            n += 1
            continue
        try:
            yield slots / str(n)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        return


def run_remote(run_root: Path) -> str:
    """The DVC remote of the run's own workspace, which its step processes share (the repo is set up first, as a
    run in process would, by one process at a time)."""
    from squeezeflow.versioning import DvcStore

    state = Path(run_root).resolve() / ".squeezeflow"
    state.mkdir(parents=True, exist_ok=True)
    store = DvcStore(Path(run_root).resolve(), state)
    with open(state / "steps.init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store.ensure()
    return store.remote()


def multiprocess() -> bool:
    """Whether this process runs one step of a run under the multiprocess executor."""
    return os.environ.get(EXECUTOR_ENV, "").strip() == "multiprocess"


def checkout(source: Path, dest: Path) -> list[str]:
    """Copy the run's definition from its workspace into the worker's, each path replaced whole (a target YAML
    removed there is removed here); returns what was copied. The source must hold params.yaml."""
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if not (source / "params.yaml").is_file():
        raise FileNotFoundError(f"{source / 'params.yaml'}: the run's workspace has no params.yaml (a worker checks "
                                "out the run from the folder the run names)")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for rel in CHECKOUT:
        src, dst = source / rel, dest / rel
        tmp = Path(tempfile.mkdtemp(prefix=f".{rel}.", dir=dest))
        try:
            staged = tmp / rel
            if src.is_dir():
                shutil.copytree(src, staged)
            elif src.is_file():
                shutil.copy2(src, staged)
            else:
                staged = None
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            if staged is not None:
                os.replace(staged, dst)
                copied.append(rel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return copied


def timings_key(stage: str, md5: str) -> str:
    """Where a stage's timings live on the remote: beside its output, keyed by the output's hash."""
    return f"timings/{stage}/{md5}.json"

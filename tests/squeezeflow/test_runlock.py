"""The workspace lock across real processes: busy, waiting, a holder killed with SIGKILL, and its debris."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezeflow.runlock import WorkspaceBusy, read_holder, remove_temp_files, workspace_lock

HOLD = """
import sys, time
from squeezeflow.runlock import workspace_lock
with workspace_lock(sys.argv[1], "holder-" + sys.argv[2]) as held:
    held.update(dagster_run_id="run-" + sys.argv[2])
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def start_holder(locks: Path, name: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(locks), name, str(seconds)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_told_who_is_busy_or_waits_for_it(tmp_path):
    locks = tmp_path / "locks"
    proc = start_holder(locks, "a", 2.0)
    with pytest.raises(WorkspaceBusy, match=f"run run-a \\(pid {proc.pid}, holder-a"):
        with workspace_lock(locks, "b", wait=False):
            pass
    said: list[str] = []
    with workspace_lock(locks, "b", say=said.append, poll_s=0.05) as held:
        # it got the lock only once the holder had let it go (the holder may still be exiting: wait, not poll)
        assert proc.wait(timeout=10) == 0
        assert held.crashed is None  # a holder that exits normally leaves no record behind
    assert len(said) == 1 and "waiting for run run-a" in said[0]
    assert read_holder(locks) is None


def test_a_holder_killed_with_sigkill_is_taken_over_and_named(tmp_path):
    locks = tmp_path / "locks"
    proc = start_holder(locks, "k", 60.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    with workspace_lock(locks, "next", wait=False) as held:  # not busy: the kernel dropped the dead lock
        assert held.crashed["pid"] == proc.pid and held.crashed["dagster_run_id"] == "run-k"
        assert read_holder(locks)["command"] == "next"
    assert time.monotonic() - t0 < 5


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with workspace_lock(tmp_path, "outer") as outer:
        with workspace_lock(tmp_path, "inner") as inner:
            assert inner is outer
        assert read_holder(tmp_path)["command"] == "outer"
    assert read_holder(tmp_path) is None


def test_only_squeezeflow_temp_paths_are_removed(tmp_path):
    art, state = tmp_path / "artifacts", tmp_path / ".squeezeflow"
    temp_dirs = [art / ".teacher.ab12cd", state / ".champion.x1y2"]  # atomic_dir and the gate's champion copy
    temp_files = [tmp_path / ".params.yaml.q1w2e3.tmp", state / "runs" / "r1" / ".gate_report.json.zz.tmp"]
    kept = [art / "teacher" / "model.pt", tmp_path / ".dvc" / "config", state / "mlflow.db", tmp_path / "params.yaml",
            art / "teacher" / "notes.tmp"]
    for p in [d / "half-written" for d in temp_dirs] + temp_files + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    removed = remove_temp_files(tmp_path, art, state)
    assert removed == sorted(os.path.relpath(p, tmp_path) for p in temp_dirs + temp_files)
    assert all(not p.exists() for p in temp_dirs + temp_files) and all(p.exists() for p in kept)

"""Atomic outputs under a real SIGKILL: a complete stage output exists at every moment, and recovery keeps it."""

import os
import signal
import subprocess
import sys

import pytest

from squeezeflow.runlock import remove_temp_files

SWAP = """
import sys
from pathlib import Path
from squeezeflow.io import atomic_dir
with atomic_dir(Path(sys.argv[1]) / "stage") as out:
    (out / "model.bin").write_text("new")
"""


@pytest.mark.parametrize("fault, survivor", [("stage-aside", "old"), ("stage-swapped", "new"), ("", "new")])
def test_a_kill_while_swapping_an_output_in_leaves_a_complete_one(tmp_path, fault, survivor):
    artifacts = tmp_path / "artifacts"
    (artifacts / "stage").mkdir(parents=True)
    (artifacts / "stage" / "model.bin").write_text("old")
    env = {**os.environ, "SQUEEZEFLOW_FAULT": f"{fault}@stage" if fault else ""}
    proc = subprocess.run([sys.executable, "-c", SWAP, str(artifacts)], env=env, timeout=60)
    assert proc.returncode == (-signal.SIGKILL if fault else 0)
    if fault == "stage-aside":
        assert not (artifacts / "stage").exists()  # the moment a kill finds: the old output aside, not deleted
    notes = remove_temp_files(tmp_path, artifacts, tmp_path / "state")
    assert (artifacts / "stage" / "model.bin").read_text() == survivor
    assert sorted(p.name for p in artifacts.iterdir()) == ["stage"]  # nothing half-written left
    assert bool(notes) == bool(fault)

"""Ruff (configured in pyproject.toml: line length 120, pyflakes, pycodestyle, import order, bugbear, pyupgrade)
runs with the test command, so CI fails on a lint error like on a failing test."""

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    ruff = Path(sys.executable).with_name("ruff")
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert exe, "ruff is not installed: it is in the dev extra (./sf test installs it)"
    proc = subprocess.run([exe, "check", "--no-cache", "."], cwd=PROJECT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]

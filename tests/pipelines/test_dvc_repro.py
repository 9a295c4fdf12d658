"""`dvc repro` as an entry point: it runs what the last run resolved, and refuses to overlap a run."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.cli import main
from squeezeflow.versioning import DvcStore
from tests.squeezeflow.test_runlock import start_holder


def repro(ws: Path, *targets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", *targets], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=600)


def test_dvc_repro_runs_the_resolved_params_and_waits_for_no_one(workspace):
    params_before = (workspace / "params.yaml").read_bytes()
    DvcStore(workspace, workspace / ".squeezeflow").ensure()  # what the first run does
    assert main(["--root", str(workspace), "dvc-yaml"]) == 0
    assert (workspace / "params.yaml").read_bytes() == params_before
    resolved = yaml.safe_load((workspace / ".squeezeflow" / "params.yaml").read_text())
    assert resolved["teacher"]["hidden"] == [64]  # params.yaml's value, with every default filled in
    done = repro(workspace, "dataset")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (workspace / "artifacts" / "dataset" / "train-x.npy").exists()

    holder = start_holder(workspace / ".squeezeflow" / "locks", "a-run", 60.0)
    try:
        busy = repro(workspace, "--force", "dataset")
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode != 0
    assert f"workspace busy: run run-a-run (pid {holder.pid}" in busy.stdout + busy.stderr

"""Real CLI runs as separate processes: two at once on one workspace, and two fresh workspaces giving identical DVC
hashes. Slow: each lifecycle run is a few tens of seconds. Killed runs: tests/pipelines/test_faults.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from squeezeflow.versioning import DvcStore
from squeezeflow.workspace import Workspace
from tests.conftest import PROJECT, make_workspace

pytestmark = pytest.mark.slow
TARGETS = ["cpu-fp32", "cpu-int8"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def env_for(base: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "SQUEEZEFLOW_ROOT")}
    env.update(DVC_SITE_CACHE_DIR=str(base / "dvc_site"), PYTHONUNBUFFERED="1")
    return env  # each workspace gets its own Dagster instance in .squeezeflow/dagster (as a user's does)


def start(base: Path, ws: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--root", str(ws), "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
                            env={**env_for(base), **(env or {})}, start_new_session=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


def client(ws: Path) -> MlflowClient:
    uri = f"sqlite:///{ws / '.squeezeflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registered(ws: Path) -> dict[str, list[str]]:
    """model name -> the sha256 of each of its versions' files."""
    c = client(ws)
    return {m.name: [v.tags["squeezeflow.onnx_sha256"] for v in c.search_model_versions(f"name = '{m.name}'")]
            for m in c.search_registered_models()}


def stage_hashes(ws: Path) -> dict[str, str]:
    return DvcStore(ws, ws / ".squeezeflow").hashes()


def assert_consistent(ws: Path) -> None:
    """dvc.lock matches every output on disk, and no model file is registered twice."""
    store = DvcStore(ws, ws / ".squeezeflow")
    stale = [s for s in Workspace(ws).stages if s in store.hashes() and not store.up_to_date(s)]
    assert not stale, f"dvc.lock disagrees with the workspace for {stale}"
    for name, shas in registered(ws).items():
        assert len(shas) == len(set(shas)), f"{name}: a model file registered twice"


@pytest.fixture(scope="module")
def fresh_pair(base):
    """Two identical runs started at once on a new workspace."""
    ws = make_workspace(base / "fresh")
    params_before = (ws / "params.yaml").read_bytes()
    procs = [start(base, ws), start(base, ws)]
    results = [finish(p) for p in procs]
    return ws, results, params_before, stage_hashes(ws)


def test_two_runs_at_once_on_a_fresh_workspace_take_turns(fresh_pair):
    ws, results, _, _ = fresh_pair
    assert [rc for rc, _ in results] == [0, 0], "\n\n".join(out for _, out in results)
    assert sum("waiting for run" in out for _, out in results) == 1  # one waited, and said for whom
    assert_consistent(ws)
    assert {name: len(shas) for name, shas in registered(ws).items()} == {
        f"squeezeflow-digits-{t}": 1 for t in TARGETS}


def test_two_runs_at_once_on_a_used_workspace(fresh_pair, base):
    ws, _, params_before, hashes = fresh_pair
    # a machine setting reruns nothing: both runs take turns and reuse what is there
    procs = [start(base, ws, "--set", "machine.data_memory_mb=512") for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0], "\n\n".join(out for _, out in results)
    assert sum("waiting for run" in out for _, out in results) == 1
    assert_consistent(ws)
    assert stage_hashes(ws) == hashes and all(len(shas) == 1 for shas in registered(ws).values())
    assert (ws / "params.yaml").read_bytes() == params_before  # --set applied to those runs only


def test_two_fresh_workspaces_give_identical_dvc_hashes(fresh_pair, base):
    """Same data, code, params and seed in another fresh workspace (its main line run in this process): every
    stage's output hash in dvc.lock is the same. (A killed run and its recovery: tests/pipelines/test_faults.py.)"""
    from squeezeflow.lifecycle import Lifecycle

    a = fresh_pair[3]
    assert set(a) == {"dataset", "teacher", "compressed-tiny", "finetuned-tiny", "exported-tiny",
                      *(f"{k}-{t}" for t in TARGETS for k in ("select", "build", "validate"))}
    other = make_workspace(base / "other")
    lc = Lifecycle(Workspace(other), push=False)
    main_line = ("dataset", "teacher", "compressed-tiny", "finetuned-tiny", "exported-tiny")
    for stage in main_line:
        lc.run_stage(stage, "r1")
    assert {s: lc.dvc.hashes()[s] for s in main_line} == {s: a[s] for s in main_line}

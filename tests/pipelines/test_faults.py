"""Crash consistency: the real CLI process is killed with SIGKILL at each side effect (squeezeflow/faults.py), and
the next run leaves a consistent state: aliases match the promotion history, no passed version is stranded,
dvc.lock matches the workspace, the remote holds every output a registered version's lineage names, and the exit
code is true to the state. Slow: seven small runs."""

import json
import signal

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from squeezeflow.tracking.promotion import history
from squeezeflow.tracking.schema import GATE_TAG, RELEASE_TAG
from squeezeflow.tracking.tracker import Tracker
from squeezeflow.versioning import DvcStore
from tests.conftest import make_workspace
from tests.pipelines.test_runs import finish, start

pytestmark = pytest.mark.slow
TARGET, MODEL = "cpu-fp32", "squeezeflow-digits-cpu-fp32"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    root = make_workspace(base / "ws", targets=(TARGET,))
    spec_path = root / "device_targets" / f"{TARGET}.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    # every new seed's candidate passes, so each run reaches the registry's side effects
    spec["regression"] = {"max_accuracy_drop": 100.0, "max_latency_increase": 100.0}
    spec["budgets"]["max_accuracy_drop"] = 100.0
    spec_path.write_text(yaml.safe_dump(spec))
    return base, root


def run(ws, seed: int, fault: str = "") -> tuple[int, str]:
    base, root = ws
    env = {"SQUEEZEFLOW_FAULT": fault} if fault else {}
    return finish(start(base, root, "--target", TARGET, "--set", f"seed={seed}", env=env))


def remote_has(remote, md5: str) -> bool:
    path = remote / "files" / "md5" / md5[:2] / md5[2:]
    if not path.is_file():
        return False
    return not md5.endswith(".dir") or all(remote_has(remote, e["md5"]) for e in json.loads(path.read_text()))


def assert_consistent(root) -> None:
    tracker = Tracker(f"sqlite:///{root / '.squeezeflow' / 'mlflow.db'}")
    c = tracker.client
    versions = c.search_model_versions(f"name = '{MODEL}'")
    done = history(tracker, MODEL)
    champion = c.get_model_version_by_alias(MODEL, "champion")
    assert done and str(champion.version) == done[-1].version  # the alias is where the history says
    assert history(tracker, MODEL, ("pending",)) == []
    for v in versions:  # no passed version stranded before its promotion step
        if v.tags.get(GATE_TAG) == "passed":
            assert v.tags.get(RELEASE_TAG) in ("done", None), (v.version, v.tags.get(RELEASE_TAG))
    store = DvcStore(root, root / ".squeezeflow")
    for stage in store.lock():
        assert store.up_to_date(stage), f"dvc.lock does not match the workspace for {stage}"
    remote = root / ".squeezeflow" / "dvc-remote"
    for v in versions:
        for key, md5 in v.tags.items():
            if key.startswith("squeezeflow.dvc.") and md5:
                assert remote_has(remote, md5), f"v{v.version}'s {key} = {md5} is not on the remote"


def killed(ws, seed: int, fault: str) -> str:
    rc, out = run(ws, seed, fault)
    assert rc == -signal.SIGKILL, out[-2000:]
    return out


def test_killed_at_every_side_effect_then_recovered(ws):
    """One chain: each run recovers what the previous kill left, then is killed at the next side effect itself
    (two of them inside the recovery), and a last run without a fault leaves a consistent state."""
    _, root = ws
    killed(ws, 2, "dvc-pushing@teacher")  # part of the teacher's files on the remote
    out = killed(ws, 3, "stage-aside@teacher")  # the seed-2 teacher moved aside, the seed-3 one not in place
    assert "recovered:" in out
    out = killed(ws, 3, "version-created")  # registered with its verdict, its promotion step not run
    assert "teacher (put back)" in out  # the complete output that was aside came back first
    killed(ws, 3, "history-pending")  # recovery releases it: the move recorded, the alias not moved
    killed(ws, 3, "alias-moved")  # recovery abandons that move and releases again: killed after the alias moved
    killed(ws, 4, "history-done")  # recovery finishes the move; a new candidate is moved, its release not marked
    rc, out = run(ws, 4)
    assert rc == 0, out[-3000:]
    assert "recovered:" in out and "its interrupted promotion finished: champion" in out
    assert_consistent(root)
    tracker = Tracker(f"sqlite:///{root / '.squeezeflow' / 'mlflow.db'}")
    newest = max(tracker.client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    assert tracker.client.get_model_version_by_alias(MODEL, "champion").version == newest.version
    moves = [r.version for r in history(tracker, MODEL)]
    assert moves == ["1", "2"] and len(history(tracker, MODEL, ("abandoned",))) == 1
    # every killed run was marked failed by the one after it, in Dagster and in MLflow; no temp folder is left
    with DagsterInstance.from_config(str(root / ".squeezeflow" / "dagster")) as instance:
        statuses = [r.status for r in instance.get_runs()]
    assert statuses.count(DagsterRunStatus.FAILURE) == 6 and statuses.count(DagsterRunStatus.SUCCESS) == 1
    pipeline = tracker.client.search_runs([tracker.experiment_id], "tags.`squeezeflow.stage` = 'pipeline'")
    assert not [r for r in pipeline if r.info.status == "RUNNING"]
    assert sum("killed" in r.data.tags.get("squeezeflow.error", "") for r in pipeline) >= 4
    assert not [p.name for p in (root / "artifacts").iterdir() if p.name.startswith(".")]
    assert not (root / ".squeezeflow" / "locks" / "workspace.json").exists()

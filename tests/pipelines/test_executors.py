"""The lifecycle job's executor, chosen by `SQUEEZEFLOW_EXECUTOR`: an unknown name is one clear error, and the
multiprocess executor runs a real job with each step in a process and a slot folder of its own (the Celery
executor runs in tests/squeezeflow/test_stack.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.executors import lifecycle_executor
from squeezeflow.fanout import EXECUTOR_ENV
from squeezeflow.tracking.schema import PID_TAG, STAGE_TAG
from tests.conftest import make_workspace


def test_the_executor_is_named_by_the_environment_and_an_unknown_name_says_which_are_known(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    assert lifecycle_executor().name == "multiprocess"
    monkeypatch.setenv(EXECUTOR_ENV, "threads")
    with pytest.raises(ValueError, match=r"SQUEEZEFLOW_EXECUTOR: unknown executor 'threads' \(known: in_process, "
                                         r"multiprocess, celery, k8s\)"):
        lifecycle_executor()


@pytest.mark.slow
def test_a_multiprocess_run_runs_steps_in_processes_and_slots_of_their_own_one_measurement_at_a_time(tmp_path):
    from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

    ws = make_workspace(tmp_path / "ws")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # no pool limits: the executor's own
    env = {**os.environ, "DAGSTER_HOME": str(home), "SQUEEZEFLOW_ROOT": str(ws), EXECUTOR_ENV: "multiprocess",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site")}
    env.pop("MLFLOW_TRACKING_URI", None)
    (tmp_path / "run.yaml").write_text("execution: {config: {max_concurrent: 2}}\n")
    argv = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "pipelines.definitions",
            "-j", "lifecycle", "--config", str(tmp_path / "run.yaml")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "recovered" not in log  # one chain's registration is never "recovered" by the other's step

    client = MlflowClient(f"sqlite:///{ws / '.squeezeflow' / 'mlflow.db'}")  # the run's workspace, not a slot's
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=200)
    pids = {r.data.tags[STAGE_TAG]: int(r.data.tags[PID_TAG]) for r in runs if PID_TAG in r.data.tags}
    assert {"dataset", "teacher", "validate-cpu-fp32", "validate-cpu-int8"} <= set(pids)
    assert len(set(pids.values())) == len(pids)  # each step a process of its own
    slots = ws / ".squeezeflow" / "steps"
    assert sorted(p.name for p in slots.iterdir() if p.is_dir()) == ["0", "1"]  # at most max_concurrent folders
    assert not (ws / "artifacts").exists() and (slots / "0" / "artifacts").is_dir()
    said = "\n".join(line for line in log.splitlines() if line.startswith("[squeezeflow]"))
    for target in ("cpu-fp32", "cpu-int8"):
        assert re.search(rf"promote-{target}\s+new champion", said), said

    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        spans = {}
        for kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
            for rec in instance.get_event_records(EventRecordsFilter(kind), limit=100):
                spans.setdefault(rec.event_log_entry.step_key, []).append(rec.event_log_entry.timestamp)
    (a0, a1), (b0, b1) = sorted(spans["cpu_fp32__validated"]), sorted(spans["cpu_int8__validated"])
    assert a1 <= b0 or b1 <= a0, "two latency measurements on one device overlapped"
    assert any(s[0] < t[1] and t[0] < s[1] for k, s in spans.items() for j, t in spans.items() if k < j), \
        "no two steps ever ran at once"

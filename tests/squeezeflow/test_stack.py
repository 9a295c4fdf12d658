"""`squeezeflow stack`: the shared deployment on loopback, for real: a Postgres cluster (initdb, as an unprivileged
user when we are root), Redis, the MLflow tracking server, two Celery workers and the Dagster daemon, and the main
job launched through the run queue and fanned out over the workers."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.stack import Stack, StackError
from squeezeflow.tracking.schema import PID_TAG, RUN_KEY_TAG, STAGE_TAG, dvc_tag
from tests.conftest import make_workspace

PROJECT = Path(__file__).resolve().parents[2]


def test_unknown_services_and_a_stack_never_started_are_clear_errors(tmp_path):
    stack = Stack(tmp_path)
    with pytest.raises(SqueezeflowInputError, match=r"--services.*'redis-cluster'"):
        stack.up(("postgres", "redis-cluster"))
    with pytest.raises(StackError, match="never started: run `squeezeflow stack up`"):
        stack.env()
    assert stack.status() == [f"no stack for {tmp_path} (start it: squeezeflow stack up)"]
    assert stack.down() == [f"no stack running for {tmp_path}"]


def test_down_never_signals_a_process_that_only_shares_a_recorded_pid(tmp_path):
    """After a reboot a recorded pid may name another process: its start time tells them apart."""
    from squeezeflow.stack import _proc_stat

    me = int(_proc_stat(os.getpid())[19])
    stack = Stack(tmp_path)
    stack._save({"ports": {}, "services": {"mlflow": {"pid": os.getpid(), "url": "-", "log": "-", "started": me + 1}}})
    assert not stack.services()["mlflow"].alive()
    assert stack.down() == ["mlflow             was not running"]  # and this test process is still here
    stack._save({"ports": {}, "services": {"mlflow": {"pid": os.getpid(), "url": "-", "log": "-", "started": me}}})
    assert stack.services()["mlflow"].alive()


def _cli(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "--root", str(root), *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=root)


def _launch(env: dict, *config: str) -> str:
    """Launch the lifecycle job through the shared instance's run queue (as the UI or a schedule would) and wait
    for it; returns the run id."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        before = {r.run_id for r in instance.get_runs()}
    argv = [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-m", "pipelines.definitions",
            "-j", "lifecycle", *(["--config-json", config[0]] if config else [])]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with DagsterInstance.get() as instance:
        (run_id,) = {r.run_id for r in instance.get_runs()} - before
    return run_id


def _wait(run_id: str, timeout: float = 600):
    from dagster import DagsterInstance

    deadline = time.monotonic() + timeout
    with DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run.is_finished:
                return run, instance.all_logs(run_id)
            time.sleep(1)
    raise AssertionError(f"run {run_id} still not finished after {timeout} s")


def _stage_runs(client: MlflowClient, run_id: str) -> dict:
    runs = client.search_runs([client.get_experiment_by_name("squeezeflow").experiment_id],
                              filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_id}'", max_results=500)
    return {r.data.tags[STAGE_TAG]: r for r in runs}


def _errors(logs) -> str:
    return "\n".join(e.dagster_event.event_specific_data.error.to_string() for e in logs
                     if e.dagster_event and getattr(e.dagster_event.event_specific_data, "error", None))


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.slow
def test_a_run_on_the_shared_stack_fans_out_over_two_celery_workers_and_survives_one_killed(
        isolated_env, monkeypatch):
    """The shared deployment for real: Postgres (initdb as an unprivileged user), Redis, the MLflow server, two
    Celery workers with their own step workspaces and one DVC remote, the Dagster daemon dequeuing runs."""
    root = make_workspace(isolated_env / "ws", targets=("cpu-fp32", "cpu-int8"))
    stack = Stack(root, workers=2)
    try:
        up = stack.up(("postgres", "redis", "mlflow", "celery-workers", "dagster-daemon"))
        services = stack.services()
        assert set(services) == {"postgres", "redis", "mlflow", "celery-worker-1", "celery-worker-2",
                                 "dagster-daemon"} and all(s.alive() for s in services.values()), up
        for key, value in stack.env().items():
            monkeypatch.setenv(key, value)
        env = {**os.environ, "PYTHONPATH": str(PROJECT), "SQUEEZEFLOW_ROOT": str(root)}
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        workers = {n: s.pid for n, s in services.items() if n.startswith("celery-worker")}
        step_roots = [root / ".squeezeflow" / "stack" / "workers" / str(i) for i in (1, 2)]

        # 1. queued, dequeued by the daemon, each step a Celery task: both workers ran stages
        first = _launch(env)
        run, logs = _wait(first)
        assert run.status.value == "SUCCESS", _errors(logs)[-3000:]
        stages = _stage_runs(client, first)
        by_pid = {int(r.data.tags[PID_TAG]) for r in stages.values() if PID_TAG in r.data.tags}
        children = {pid: _children(pid) for pid in workers.values()}
        assert all(by_pid & c for c in children.values()), (by_pid, children)  # each worker ran some
        assert by_pid <= set().union(*children.values())  # and nothing else did
        # every stage output of the run is on the shared remote, where any worker pulls it from
        remote = Path(env["SQUEEZEFLOW_DVC_REMOTE"]) / "files" / "md5"
        parent = next(r for r in stages.values() if r.data.tags[STAGE_TAG] == "pipeline")
        made = {k.removeprefix(dvc_tag("")): v for k, v in parent.data.tags.items() if k.startswith(dvc_tag(""))}
        assert {"dataset", "teacher", "build-cpu-fp32", "validate-cpu-int8"} <= set(made)
        assert all((remote / md5[:2] / md5[2:]).exists() for md5 in made.values()), made
        # champions in the server's registry; lineage read back through the server
        for target in ("cpu-fp32", "cpu-int8"):
            assert client.get_model_version_by_alias(f"squeezeflow-digits-{target}", "champion").version == "1"
        lineage = _cli(root, env, "lineage", "--json", "models:/squeezeflow-digits-cpu-int8@champion")
        assert lineage.returncode == 0, lineage.stderr[-2000:]
        steps = {link["step"]: link for link in json.loads(lineage.stdout)["chain"]}
        assert {"dataset", "teacher", "compressed", "validation"} <= set(steps), steps
        assert not any(link["problems"] for link in steps.values()), steps
        # the Dagster run lives in Postgres, not in a SQLite file under the instance's home
        assert not list((root / ".squeezeflow" / "stack" / "dagster").rglob("*.db"))

        # 2. the workers' own workspaces wiped: every stage comes back from DVC's run cache on the remote
        for step_root in step_roots:
            for gone in ("artifacts", ".dvc/cache", "dvc.lock"):
                shutil.rmtree(step_root / gone, ignore_errors=True) if gone != "dvc.lock" else \
                    (step_root / gone).unlink(missing_ok=True)
        second = _launch(env)
        run, logs = _wait(second)
        assert run.status.value == "SUCCESS", _errors(logs)[-3000:]
        again = {n: r for n, r in _stage_runs(client, second).items() if "squeezeflow.reused" in r.data.tags}
        assert set(again) == set(made) and all(r.data.tags["squeezeflow.reused"] == "true" for r in again.values())

        # 3. a worker killed in the middle of a step: the run fails and says why; nothing half-registered
        versions = {m.name: len(client.search_model_versions(f"name = '{m.name}'"))
                    for m in client.search_registered_models()}
        longer = json.dumps({"resources": {"squeezeflow": {"config": {"overrides": [
            "teacher.hidden=[256]", "teacher.train.epochs=60", "teacher.train.patience=60"]}}}})
        third = _launch(env, longer)
        os.kill(_worker_running(third, "teacher", workers), signal.SIGKILL)  # a second or so into the step
        run, logs = _wait(third)
        assert run.status.value == "FAILURE"
        said = _errors(logs)
        assert "[teacher]: billiard.exceptions.WorkerLostError" in said, said[-3000:]
        assert {m.name: len(client.search_model_versions(f"name = '{m.name}'"))
                for m in client.search_registered_models()} == versions
        assert all(s.alive() for s in stack.services().values())  # the worker took a new child; the stack stands

        # the database password is in no command line, printed status, instance file or MLflow param
        password = stack.env()["DAGSTER_PG_PASSWORD"]
        cmdlines = [Path(f"/proc/{s.pid}/cmdline").read_bytes().decode(errors="replace") for s in services.values()]
        params = [json.dumps(r.data.params) for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()])]
        written = (root / ".squeezeflow" / "stack" / "dagster" / "dagster.yaml").read_text()
        for where, text in {"cmdline": "\n".join(cmdlines), "status": "\n".join(stack.status()),
                            "dagster.yaml": written, "mlflow params": "\n".join(params), "run errors": said}.items():
            assert password not in text, where
        assert oct((root / ".squeezeflow" / "stack" / "client.env").stat().st_mode & 0o777) == "0o600"
    finally:
        pg_data = Path(stack._state()["pg_data"])
        stopped = stack.down(purge=True)
    assert [line.split()[0] for line in stopped] == ["dagster-daemon", "celery-worker-2", "celery-worker-1",
                                                      "mlflow", "redis", "postgres", "postgres"]
    assert not pg_data.exists() and "data deleted" in stopped[-1]
    assert not any(s.alive() for s in services.values())
    assert stack.services() == {}


def _worker_running(run_id: str, step: str, workers: dict[str, int], timeout: float = 300) -> int:
    """The pid of the worker child that started `step` of the run (its engine event names the Celery worker)."""
    from dagster import DagsterInstance

    deadline = time.monotonic() + timeout
    with DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            for e in instance.all_logs(run_id):
                data = e.dagster_event.event_specific_data if e.dagster_event else None
                meta = getattr(data, "metadata", None) or {}
                if e.step_key == step and "Celery worker" in meta:
                    n = meta["Celery worker"].value.split("@")[0].removeprefix("w")
                    (child,) = _children(workers[f"celery-worker-{n}"])
                    return child
            time.sleep(0.5)
    raise AssertionError(f"no worker started step {step} of run {run_id}")


def test_the_instance_yaml_reads_exactly_the_variables_the_stack_gives_its_clients(tmp_path):
    """infra/dagster.yaml is the shared instance's file on any deployment: each value an `{env: NAME}` that
    `Stack.env()` sets, and no literal credential."""
    import yaml

    from squeezeflow.stack import INFRA_DAGSTER_YAML

    def env_names(node) -> set[str]:
        if isinstance(node, dict):
            return set().union(*(env_names(v) for v in node.values())) | ({node["env"]} if "env" in node else set())
        return set()

    config = yaml.safe_load(INFRA_DAGSTER_YAML.read_text())
    wanted = env_names(config)
    stack = Stack(tmp_path)
    stack._save({"ports": {"postgres": 5432, "mlflow": 5000}, "services": {}})
    assert wanted == {k for k in stack.env() if k.startswith("DAGSTER_PG_")}
    assert set(config["storage"]["postgres"]["postgres_db"]) >= {"hostname", "port", "username", "password", "db_name"}
    assert all(isinstance(v, dict) for k, v in config["storage"]["postgres"]["postgres_db"].items() if k != "scheme")

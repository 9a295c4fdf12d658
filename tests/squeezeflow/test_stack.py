"""`squeezeflow stack`: the shared deployment on loopback, for real: a Postgres cluster (initdb, as an unprivileged
user when we are root), the MLflow tracking server on it, and the main job run against both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.stack import Stack, StackError
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


@pytest.mark.slow
def test_the_main_job_runs_on_the_stacks_postgres_and_mlflow_server_and_down_stops_only_its_processes(
        isolated_env):
    root = make_workspace(isolated_env / "ws", targets=("cpu-fp32",))
    stack = Stack(root)
    try:
        up = stack.up(("postgres", "mlflow"))
        services = stack.services()
        assert set(services) == {"postgres", "mlflow"} and all(s.alive() for s in services.values()), up
        env = {**os.environ, **stack.env(), "PYTHONPATH": str(PROJECT)}
        done = _cli(root, env, "run", "--target", "cpu-fp32")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        # Dagster's run is in Postgres, not in a SQLite file under the instance's home
        code = ("from dagster import DagsterInstance; i = DagsterInstance.get(); "
                "print(type(i._run_storage).__name__, [r.status.value for r in i.get_runs()])")
        seen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert seen.stdout.split() == ["PostgresRunStorage", "['SUCCESS']"], seen.stderr[-2000:]
        assert not list((root / ".squeezeflow" / "stack" / "dagster").rglob("*.db"))

        # the champion is in the server's registry, its file served through the server (proxied artifacts)
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        champion = client.get_model_version_by_alias("squeezeflow-digits-cpu-fp32", "champion")
        assert champion.version == "1"
        assert not (root / ".squeezeflow" / "mlflow.db").exists()
        lineage = _cli(root, env, "lineage", "--json", "models:/squeezeflow-digits-cpu-fp32@champion")
        assert lineage.returncode == 0, lineage.stderr[-2000:]
        steps = [link["step"] for link in json.loads(lineage.stdout)["chain"]]
        assert {"dataset", "teacher", "compressed", "validation"} <= set(steps), steps

        # the database password is in no command line, printed status, instance file or MLflow param
        password = stack.env()["DAGSTER_PG_PASSWORD"]
        cmdlines = [Path(f"/proc/{s.pid}/cmdline").read_bytes().decode(errors="replace") for s in services.values()]
        params = [json.dumps(r.data.params) for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()])]
        written = (root / ".squeezeflow" / "stack" / "dagster" / "dagster.yaml").read_text()
        for where, text in {"cmdline": "\n".join(cmdlines), "status": "\n".join(stack.status()),
                            "dagster.yaml": written, "mlflow params": "\n".join(params),
                            "run output": done.stdout + done.stderr}.items():
            assert password not in text, where
        assert oct((root / ".squeezeflow" / "stack" / "client.env").stat().st_mode & 0o777) == "0o600"
    finally:
        stopped = stack.down()
    assert [line.split()[0] for line in stopped] == ["mlflow", "postgres"]
    assert not any(s.alive() for s in services.values())
    assert stack.services() == {}


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

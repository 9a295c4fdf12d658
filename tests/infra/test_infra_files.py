"""infra/ holds the shared deployment for real clusters (a Dockerfile, a docker-compose file, values for the
official Dagster Helm chart). Docker and Kubernetes do not run here: these tests check the files against the code,
so a renamed module, command or environment variable fails here rather than on a cluster."""

import importlib.util
import re
import sys
from pathlib import Path

import yaml

from pipelines.executors import BACKEND_ENV, BROKER_ENV, EXECUTOR_ENV
from squeezeflow.fanout import STEP_ROOT_ENV
from squeezeflow.stack import CELERY_CONFIG, INFRA_DAGSTER_YAML, SERVICES
from squeezeflow.versioning.dvc import REMOTE_ENV

PROJECT = Path(__file__).resolve().parents[2]
INFRA = PROJECT / "infra"
BIN = Path(sys.executable).parent


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yaml").read_text())


def _instance_env_names() -> set[str]:
    return set(re.findall(r"\{env: (\w+)\}", INFRA_DAGSTER_YAML.read_text()))


def _commands() -> list[list[str]]:
    compose = _compose()["services"]
    # the user-code image's commands (the redis service runs the official Redis image)
    commands = [s["command"] for s in compose.values() if "command" in s and s.get("image") != "redis:7"]
    cmd = re.search(r"^CMD (\[.*\])$", (INFRA / "Dockerfile").read_text(), re.M)
    return [*commands, yaml.safe_load(cmd.group(1))]


def test_every_command_is_installed_and_every_module_it_serves_imports():
    for argv in _commands():
        assert (BIN / argv[0]).exists(), f"{argv[0]} is not installed with squeezeflow"
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag in ("-m", "--module-name"):
                assert importlib.util.find_spec(value), value
    helm = yaml.safe_load((INFRA / "helm" / "values.yaml").read_text())
    for deployment in helm["dagster-user-deployments"]["deployments"]:
        args = deployment["dagsterApiGrpcArgs"]
        assert args[0] == "-m" and importlib.util.find_spec(args[1])


def test_the_dockerfile_copies_what_exists_and_the_workspace_files_the_code_location_reads():
    text = (INFRA / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (PROJECT / src).exists(), f"COPY {src}: no such path"
    for needed in ("params.yaml", "device_targets", "recipes", "infra/dagster.yaml"):
        assert f"COPY {needed} " in text
    assert "SQUEEZEFLOW_ROOT=" in text and "DAGSTER_HOME=" in text


def test_compose_sets_exactly_the_instance_variables_and_holds_no_credential():
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "mlflow", "dagster-webserver", "dagster-daemon"} <= set(services) >= set(SERVICES)
    env = compose["x-squeezeflow"]["environment"]
    assert {k for k in env if k.startswith("DAGSTER_PG_")} == _instance_env_names()
    # the fan-out: the executor, its broker and backend, the shared DVC remote, as the code reads them
    assert env[EXECUTOR_ENV] == "celery" and env[REMOTE_ENV]
    assert {BROKER_ENV, BACKEND_ENV} <= set(env)
    config = (CELERY_CONFIG / "dagster_celery_config.py").read_text()
    assert all(f'os.environ["{k}"]' in config for k in (BROKER_ENV, BACKEND_ENV))
    workers = services["celery-workers"]
    assert workers["command"][:3] == ["celery", "-A", "dagster_celery.app"]
    assert importlib.util.find_spec(workers["command"][2])
    assert workers["environment"][STEP_ROOT_ENV] and "/infra/celery" in workers["environment"]["PYTHONPATH"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    store = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert store.startswith("postgresql+psycopg2://") and store.endswith("/mlflow")
    assert "CREATE DATABASE mlflow" in (INFRA / "postgres-init.sql").read_text()
    for text in ((INFRA / "docker-compose.yaml").read_text(), (INFRA / "helm" / "values.yaml").read_text()):
        for key, value in re.findall(r"^ *(\w*PASSWORD\w*): *(\S+)", text, re.M):
            assert value.startswith("${"), f"{key}: a literal credential"


def test_helm_values_use_the_same_database_driver_and_the_k8s_run_launcher():
    helm = yaml.safe_load((INFRA / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load(INFRA_DAGSTER_YAML.read_text())
    assert helm["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert helm["postgresql"]["enabled"] is False and helm["generatePostgresqlPasswordSecret"] is False
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert "postgresqlPassword" not in helm["postgresql"]

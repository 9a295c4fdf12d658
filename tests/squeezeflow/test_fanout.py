"""A run's steps in workers' own workspaces (squeezeflow.fanout): the checkout, a stage output moved between two
workspaces only through a shared DVC remote (by hash, and by DVC's run cache), and errors that name what is
missing. The whole stack (Postgres, Redis, the MLflow server, two Celery workers, the Dagster daemon) runs in
tests/squeezeflow/test_stack.py."""

import json
import shutil

import pytest

from squeezeflow.fanout import checkout
from squeezeflow.lifecycle import Lifecycle
from squeezeflow.versioning.dvc import REMOTE_ENV, DvcStore
from squeezeflow.workspace import Workspace
from tests.conftest import make_workspace


def test_checkout_replaces_the_runs_definition_whole_and_needs_params(tmp_path):
    source = make_workspace(tmp_path / "run", targets=("cpu-fp32", "cpu-int8"))
    step = tmp_path / "worker"
    assert checkout(source, step) == ["params.yaml", "device_targets", "recipes"]
    assert sorted(p.name for p in (step / "device_targets").iterdir()) == ["cpu-fp32.yaml", "cpu-int8.yaml"]
    (source / "device_targets" / "cpu-int8.yaml").unlink()  # a target removed from the run is gone from the step
    shutil.rmtree(source / "recipes")
    assert checkout(source, step) == ["params.yaml", "device_targets"]
    assert [p.name for p in (step / "device_targets").iterdir()] == ["cpu-fp32.yaml"]
    assert not (step / "recipes").exists() and not list(step.glob(".*"))  # no temp folders left behind
    with pytest.raises(FileNotFoundError, match=r"empty/params.yaml: the run's workspace has no params.yaml"):
        checkout(tmp_path / "empty", step)


def test_a_user_file_named_relative_to_the_run_is_read_from_the_runs_workspace(tmp_path, digits_npz):
    source = make_workspace(tmp_path / "run")
    shutil.copy(digits_npz, source / "mine.npz")
    (source / "params.yaml").write_text((source / "params.yaml").read_text()
                                        + "dataset: {name: npz, path: mine.npz}\n")
    checkout(source, tmp_path / "worker")
    ws = Workspace(tmp_path / "worker", files_root=source)
    assert ws.params().dataset.path == str(source / "mine.npz")  # the same input, recorded alike by every worker


def test_a_stage_made_in_one_workspace_reaches_another_only_through_the_shared_remote(isolated_env, monkeypatch):
    remote = isolated_env / "shared-remote"
    monkeypatch.setenv(REMOTE_ENV, str(remote))
    run = make_workspace(isolated_env / "run")
    one, two = (isolated_env / "w1", isolated_env / "w2")
    for w in (one, two):
        checkout(run, w)
    mlflow = f"sqlite:///{isolated_env / 'mlflow.db'}"  # one tracking store, as the stack's server is
    first = Lifecycle(Workspace(one, files_root=run), tracking_uri=mlflow, fanout=True)
    made = first.run_stage("dataset", "run-a")
    assert not made.reused and first.dvc.remote_url == str(remote)

    # the other worker: no dataset output, no dvc.lock entry, no local cache of it; DVC's run cache on the remote
    second = Lifecycle(Workspace(two, files_root=run), tracking_uri=mlflow, fanout=True)
    again = second.run_stage("dataset", "run-b")
    assert again.reused and again.md5 == made.md5
    assert json.loads((two / "artifacts" / "dataset" / "metrics.json").read_text())["samples"] == 1797

    # an input pulled by the hash the run recorded: the teacher's step on worker two reads worker one's dataset
    shutil.rmtree(two / "artifacts" / "dataset")
    second.pull_inputs(["dataset"], "run-a")
    assert (two / "artifacts" / "dataset" / "metrics.json").exists()
    with pytest.raises(RuntimeError, match=r"teacher: this run \(Dagster run run-a\) recorded no output"):
        second.pull_inputs(["teacher"], "run-a")

    # an object lost on the remote is one clear error, not a half-made folder
    store = DvcStore(two, two / ".squeezeflow")
    for f in (remote / "files" / "md5").rglob("*"):
        if f.is_file() and not f.name.endswith(".dir"):
            f.unlink()
            break
    shutil.rmtree(two / ".dvc" / "cache")
    with pytest.raises(FileNotFoundError, match=r"dataset: output .*\.dir is not on the DVC remote"):
        store.fetch_output("dataset", made.md5, isolated_env / "elsewhere" / "dataset")
    assert not (isolated_env / "elsewhere" / "dataset").exists()


def test_a_step_workspace_without_a_shared_remote_is_refused(isolated_env, monkeypatch):
    monkeypatch.delenv(REMOTE_ENV, raising=False)
    run = make_workspace(isolated_env / "run")
    checkout(run, isolated_env / "w1")
    lifecycle = Lifecycle(Workspace(isolated_env / "w1", files_root=run), fanout=True)
    with pytest.raises(RuntimeError, match=rf"needs a DVC remote every worker shares: set {REMOTE_ENV}"):
        lifecycle.dvc  # noqa: B018


def test_step_slots_are_one_folder_per_process_at_once_and_reused_after(tmp_path):
    from squeezeflow.fanout import step_slot

    with step_slot(tmp_path) as one, step_slot(tmp_path) as two:  # flocks are per open file: held twice here
        assert (one.name, two.name) == ("0", "1") and one.parent == tmp_path / ".squeezeflow" / "steps"
    with step_slot(tmp_path) as again:
        assert again.name == "0"

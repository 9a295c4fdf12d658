"""The resource holds the workspace for Dagster runs (launchpad, schedule, asset graph), not for registry jobs."""

import time

from dagster import AssetKey, DagsterInstance

from pipelines.definitions import build_definitions
from tests.squeezeflow.test_runlock import start_holder


def test_a_dagster_run_waits_for_the_workspace_and_says_for_whom(workspace, capsys):
    defs = build_definitions(workspace)
    holder = start_holder(workspace / ".squeezeflow" / "locks", "cli", 3.0)
    t0 = time.monotonic()
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("lifecycle").execute_in_process(
            instance=instance, asset_selection=[AssetKey("dataset")], raise_on_error=False)
    assert result.success
    assert holder.poll() == 0 and time.monotonic() - t0 >= 1.0  # it ran only after the holder let go
    out = capsys.readouterr().out
    assert f"waiting for run run-cli (pid {holder.pid}" in out


def test_registry_jobs_do_not_wait_for_a_training_run(workspace):
    defs = build_definitions(workspace)
    holder = start_holder(workspace / ".squeezeflow" / "locks", "training", 60.0)
    try:
        with DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("rollback").execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"ops": {"rollback_champion": {"config": {"target": "cpu-fp32", "reason": "test",
                                                                     "promoted_by": "me"}}}})
        assert holder.poll() is None  # still holding: the rollback did not wait for it
        # Nothing to roll back to in a new registry: it fails on that, not on the lock.
        failure = result.get_step_failure_events()[0].event_specific_data.error
        assert "busy" not in str(failure.message) and "waiting" not in str(failure.message)
    finally:
        holder.kill()
        holder.wait()


def test_a_launchpad_run_with_another_recipe_runs_that_chain_in_the_plain_assets(workspace, capsys):
    """The graph was loaded for params.yaml's recipe (tiny); a run choosing tiny-wide (the launchpad's `recipe`)
    runs tiny-wide's chain in the plain compressed/finetuned/exported assets, and the chain of tiny, which a target
    still lists but this graph has as the plain assets, is run where the target's selection needs it."""
    import json
    import re

    from tests.conftest import two_recipe_target

    two_recipe_target(workspace)
    defs = build_definitions(workspace)
    keys = [AssetKey(k) for k in ("dataset", "teacher", "compressed", "finetuned", "exported")] + \
        [AssetKey(["edge", "selected"])]
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("lifecycle").execute_in_process(
            instance=instance, asset_selection=keys, raise_on_error=False,
            run_config={"resources": {"squeezeflow": {"config": {"root": str(workspace), "recipe": "tiny-wide"}}}})
    assert result.success
    mats = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert mats["exported"]["path"].value.endswith("artifacts/exported-tiny-wide")  # the run's recipe's chain
    out = capsys.readouterr().out
    assert re.search(r"\] exported-tiny +built for select-edge \(this asset graph has no asset for it\)", out), out
    chosen = json.loads((workspace / "artifacts" / "select-edge" / "selection.json").read_text())
    assert {c["recipe"] for c in chosen["candidates"]} == {"tiny", "tiny-wide"}

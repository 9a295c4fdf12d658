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

from datetime import UTC, datetime

import pytest
from dagster import DagsterInvalidConfigError, RunRequest, build_schedule_context, validate_run_config

from pipelines.definitions import build_definitions

MONDAY_3AM = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def test_weekly_tick_requests_one_lifecycle_run_with_explicit_config(workspace):
    defs = build_definitions(workspace)
    sched = defs.resolve_schedule_def("weekly_retrain_and_compress")
    assert (sched.cron_schedule, sched.execution_timezone, sched.job_name) == ("0 3 * * 1", "UTC", "lifecycle")
    assert sched.default_status.value == "STOPPED"

    with build_schedule_context(scheduled_execution_time=MONDAY_3AM) as context:
        data = sched.evaluate_tick(context)
    (request,) = data.run_requests
    assert isinstance(request, RunRequest)
    assert request.job_name in (None, "lifecycle")  # None: the schedule's own job
    assert request.run_key == "weekly_retrain_and_compress:2026-03-02T03:00Z"
    assert request.tags["squeezeflow/trigger"] == "schedule"
    assert request.tags["squeezeflow/scheduled_for"] == "2026-03-02T03:00:00+00:00"

    job = defs.resolve_job_def("lifecycle")
    resolved = validate_run_config(job, request.run_config)
    assert resolved["resources"]["squeezeflow"]["config"]["overrides"] == []
    assert resolved["resources"]["squeezeflow"]["config"]["recipe"] is None
    # The schema really is checked: a misspelt key would not pass.
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(job, {"resources": {"squeezeflow": {"config": {"overides": []}}}})


def test_each_tick_has_its_own_run_key(workspace):
    sched = build_definitions(workspace).resolve_schedule_def("weekly_retrain_and_compress")
    keys = set()
    for day in (2, 9):
        with build_schedule_context(scheduled_execution_time=MONDAY_3AM.replace(day=day)) as context:
            keys |= {r.run_key for r in sched.evaluate_tick(context).run_requests}
    assert len(keys) == 2

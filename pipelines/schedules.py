from __future__ import annotations

from datetime import UTC

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from pipelines.jobs import lifecycle_job
from pipelines.retention import gc

SCHEDULE_TRIGGER_TAG = "squeezeflow/trigger"


# Scheduled retrain-and-compress. Stopped by default: a user turns it on in the UI (Automation tab).
@schedule(
    name="weekly_retrain_and_compress",
    job=lifecycle_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every Monday 03:00 UTC: the whole lifecycle on the current params.yaml and device targets.",
)
def weekly_retrain(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time
    when = when.astimezone(UTC) if when else None
    # Explicit, not implied: no parameter overrides and no recipe override, so the run uses params.yaml as committed
    # (and the recipe it names); what changed since last week is what DVC sees changed.
    run_config = {"resources": {"squeezeflow": {"config": {"overrides": [], "recipe": None}}}}
    # One run per scheduled tick: the daemon skips a run key it has already launched (a retried tick, a restart).
    run_key = f"weekly_retrain_and_compress:{when:%Y-%m-%dT%H:%M}Z" if when else None
    tags = {SCHEDULE_TRIGGER_TAG: "schedule"}
    if when:
        tags["squeezeflow/scheduled_for"] = when.isoformat()
    return RunRequest(run_key=run_key, run_config=run_config, tags=tags)


# Retention after the retrain: params.yaml `retention:` says what to keep. Stopped by default, like the retrain.
@schedule(
    name="weekly_gc",
    job=gc,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every Monday 06:00 UTC: old versions and unreferenced DVC objects removed (params.yaml retention).",
)
def weekly_gc(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time
    return RunRequest(run_key=f"weekly_gc:{when:%Y-%m-%dT%H:%M}" if when else None,
                      run_config={"ops": {"collect_garbage": {"config": {}}}},
                      tags={SCHEDULE_TRIGGER_TAG: "schedule"})

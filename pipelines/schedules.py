from __future__ import annotations

from datetime import UTC

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from pipelines.jobs import lifecycle_job

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

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from pipelines.jobs import lifecycle_job

# Scheduled retrain-and-compress. Stopped by default: a user turns it on in the UI (Automation tab).
weekly_retrain = ScheduleDefinition(
    name="weekly_retrain_and_compress",
    job=lifecycle_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every Monday 03:00 UTC: the whole lifecycle on the current params.yaml and device targets.",
)

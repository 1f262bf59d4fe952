"""The project's definitions with a schedule that ticks every minute, so the two-scheduler drill
sees ticks in a test's time. The sensors are the shipped ones, at their default intervals."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleDefinition, ScheduleEvaluationContext

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.sensors import all_sensors


def _sample_day(_context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(partition_key="2026-11-23")


every_minute = ScheduleDefinition(
    name="drill_every_minute",
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    job=daily_drops_job,
    execution_fn=_sample_day,
    default_status=DefaultScheduleStatus.RUNNING,
)

defs = build_definitions(
    schedules=[every_minute],
    sensors=all_sensors,
)

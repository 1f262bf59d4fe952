from dagster import DefaultScheduleStatus, ScheduleDefinition, build_schedule_from_partitioned_job

from musicbutler_pipeline.jobs import daily_drops_job, prune_warehouse_job

# 21:35 UTC, for that day's partition (the partitions definition has end_offset=1).
daily_drops_schedule = build_schedule_from_partitioned_job(
    daily_drops_job,
    name="daily_drops_schedule",
    hour_of_day=21,
    minute_of_hour=35,
    description="Sends the day's digests at 21:35 UTC.",
)

# 04:05 UTC, away from the day's sends at 21:35. On by default, unlike the sending schedule:
# retention that must be remembered is none, and pruning never touches a day still being sent.
prune_warehouse_schedule = ScheduleDefinition(
    name="prune_warehouse_schedule",
    job=prune_warehouse_job,
    cron_schedule="5 4 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Prunes drops and source pages past their retention (README, Configuration).",
)

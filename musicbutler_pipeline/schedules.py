from dagster import build_schedule_from_partitioned_job

from musicbutler_pipeline.jobs import daily_drops_job

# 21:35 UTC, for that day's partition (the partitions definition has end_offset=1).
daily_drops_schedule = build_schedule_from_partitioned_job(
    daily_drops_job,
    name="daily_drops_schedule",
    hour_of_day=21,
    minute_of_hour=35,
    description="Sends the day's digests at 21:35 UTC.",
)

"""The one partitions definition: a UTC day per partition."""

from datetime import UTC, date, datetime

from dagster import DailyPartitionsDefinition

FIRST_DAY = "2026-01-01"

# end_offset=1: today's partition exists during the day, so the 21:35 UTC schedule sends today's
# drops rather than yesterday's.
daily_partitions = DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)


def latest_partition_day(now: datetime | None = None) -> date:
    """Today in UTC: the newest day that may be run."""
    return (now or datetime.now(UTC)).astimezone(UTC).date()

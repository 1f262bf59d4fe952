"""Temporary send failures are retried within the day, automatically, with backoff.

A day whose emails failed temporarily (mail server down, login refused, 4xx) gets another run of
``daily_drops_job`` for its partition. The ledger decides what that run sends: only rows that
failed temporarily are claimable again; sent, rejected (5xx) and unknown-outcome rows never are.

Backoff: after a day's n-th attempt failed, wait ``backoff * 2**(n-1)`` (at most
``max_backoff``) counted from its latest failure: ``MUSICBUTLER_RETRY_BACKOFF_SECONDS``
(default 300) and ``MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS`` (default 3600), read at each tick.
A day is retried only while it is at most ``MUSICBUTLER_MAX_SEND_AGE_DAYS`` old (default 2):
past that the digest is stale ("new music" from three days ago), the notification asset refuses
it, and the operator decides. Never two runs of a partition at once: a day with a queued or
running run is skipped, the run key is unique per attempt round, and the instance's tag limit on
``musicbutler/notifications`` (deploy/dagster.yaml) runs one notification run at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.ledger import SendLedger

RETRY_ATTEMPT_TAG = "musicbutler/retry-attempt"
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def retry_delay(attempts: int, backoff: timedelta, max_backoff: timedelta) -> timedelta:
    """The wait after a day's ``attempts``-th try failed."""
    return min(max_backoff, backoff * 2 ** max(0, attempts - 1))


def build_retry_sensor(
    *,
    minimum_interval_seconds: int = 60,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SensorDefinition:
    """The retry sensor, on by default. Its backoff comes from the settings at each tick; the
    tick interval is part of the definition (Dagster reads it when the definitions load)."""

    @sensor(
        job=daily_drops_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Requests another run of a day whose emails failed temporarily, with backoff "
            "(MUSICBUTLER_RETRY_BACKOFF_SECONDS, default 5 min, doubling up to "
            "MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS, default 1 h), while the day is at most "
            "MUSICBUTLER_MAX_SEND_AGE_DAYS old. Rejected addresses and unknown outcomes are "
            "never retried."
        ),
    )
    def retry_failed_sends_sensor(
        context: SensorEvaluationContext, warehouse: WarehouseResource
    ) -> SensorResult | SkipReason:
        now = clock()
        settings = warehouse.environment()
        backoff = timedelta(seconds=settings.retry_backoff_seconds)
        max_backoff = timedelta(seconds=settings.retry_max_backoff_seconds)
        today = latest_partition_day(now)
        oldest = today - timedelta(days=settings.max_send_age_days)
        requests = []
        waiting = []
        for day in SendLedger(warehouse.engine).retryable_failures(oldest, today):
            key = day.partition_date.isoformat()
            due = day.last_failed_at + retry_delay(day.attempts, backoff, max_backoff)
            if now < due:
                waiting.append(f"{key} at {due:%H:%M:%S}")
                continue
            if _partition_busy(context, key):
                waiting.append(f"{key} after its current run")
                continue
            context.log.info(
                "%s: %d email(s) failed temporarily after %d attempt(s): requesting a retry run",
                key,
                day.failures,
                day.attempts,
            )
            requests.append(
                RunRequest(
                    partition_key=key,
                    # One request per attempt round: a tick that sees the same failures again
                    # never queues a second run for them.
                    run_key=f"retry:{key}:{day.attempts}",
                    tags={RETRY_ATTEMPT_TAG: str(day.attempts + 1)},
                )
            )
        if requests:
            return SensorResult(run_requests=requests)
        if waiting:
            return SkipReason("retry due: " + ", ".join(waiting))
        return SkipReason(
            f"no temporary send failures from {oldest} (MUSICBUTLER_MAX_SEND_AGE_DAYS="
            f"{settings.max_send_age_days}) to {today}"
        )

    return retry_failed_sends_sensor


def _partition_busy(context: SensorEvaluationContext, partition_key: str) -> bool:
    runs = context.instance.get_runs(
        filters=RunsFilter(
            job_name=daily_drops_job.name,
            statuses=UNFINISHED,
            tags={"dagster/partition": partition_key},
        ),
        limit=1,
    )
    return bool(runs)

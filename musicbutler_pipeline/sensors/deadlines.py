"""A day whose owed emails are not all sent by its deadline e-mails the operator, once per day.

The deadline is ``MUSICBUTLER_SEND_DEADLINE_HOURS`` (default 6) after the partition's end, read at
each tick. A day is looked at until ``MUSICBUTLER_MAX_SEND_AGE_DAYS`` + 1 days after its deadline
(counted from the deadline, not from today: a deadline of up to 720 hours may pass when the day
is older than the max send age); by then it was told about when its deadline passed. Rejected
addresses alone do not count (the `every_owed_email_sent` check warns about them); temporary
failures, unknown outcomes, claims without outcome and emails never attempted do.

A day no run sent at all (no materialization of drop_notifications: the day's run never started,
or failed before its drops were computed) owes nothing in the ledger, so it is looked for in
Dagster's records: from the day the sensor first ticked (its cursor), so a new installation is
not told about the days before it existed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetRecordsFilter,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from musicbutler_pipeline.assets import drop_notifications
from musicbutler_pipeline.partitions import daily_partitions, latest_partition_day
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import (
    DAY_NOT_RUN,
    ONCE,
    SEND_DEADLINE,
    day_not_run_text,
    missed_deadline_text,
)
from musicbutler_pipeline.warehouse.ledger import SendLedger


def build_send_deadline_sensor(
    *,
    minimum_interval_seconds: int = 300,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SensorDefinition:
    @sensor(
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "E-mails MUSICBUTLER_OPERATOR_EMAIL, once per day, when a day's owed emails are not "
            "all sent MUSICBUTLER_SEND_DEADLINE_HOURS (default 6) after the day ends."
        ),
    )
    def send_deadline_sensor(
        context: SensorEvaluationContext, warehouse: WarehouseResource, mailer: MailerResource
    ) -> SkipReason:
        now = clock()
        settings = warehouse.environment()
        today = latest_partition_day(now)
        allowed = timedelta(hours=settings.send_deadline_hours)
        # The day of `now - allowed` is the first whose deadline is still to come.
        first_not_due = latest_partition_day(now - allowed)
        oldest = first_not_due - timedelta(days=settings.max_send_age_days + 1)
        late = []
        for day in SendLedger(warehouse.engine).unsent_days(oldest, today):
            deadline = _deadline(day.partition_date, allowed)
            if day.needs_attention and now >= deadline:
                late.append(day.partition_date.isoformat())
                mailer.alert_operator(
                    warehouse.engine,
                    SEND_DEADLINE,
                    missed_deadline_text(day, deadline),
                    now=now,
                    claim=f"{SEND_DEADLINE}:{day.partition_date}",
                    period=ONCE,
                )
        if context.cursor is None:
            context.update_cursor(today.isoformat())
        watched_from = date.fromisoformat(context.cursor or today.isoformat())
        for day in _days_never_sent(context, max(oldest, watched_from), today):
            deadline = _deadline(day, allowed)
            if day.isoformat() in late or now < deadline:
                continue
            late.append(day.isoformat())
            mailer.alert_operator(
                warehouse.engine,
                DAY_NOT_RUN,
                day_not_run_text(day, deadline),
                now=now,
                claim=f"{SEND_DEADLINE}:{day}",  # one e-mail a day, whichever way it is late
                period=ONCE,
            )
        if late:
            return SkipReason(
                f"past the send deadline with owed emails unsent: {', '.join(sorted(late))}"
            )
        return SkipReason(
            f"every day from {oldest} to {today} past its deadline "
            f"(MUSICBUTLER_SEND_DEADLINE_HOURS={settings.send_deadline_hours}) is sent"
        )

    return send_deadline_sensor


def _deadline(day: date, allowed: timedelta) -> datetime:
    return daily_partitions.time_window_for_partition_key(day.isoformat()).end + allowed


def _days_never_sent(context: SensorEvaluationContext, since: date, until: date) -> list[date]:
    """Days from ``since`` to ``until`` without a materialization of drop_notifications (a day
    sent even with nothing to send has one). A few days, one small lookup each."""
    days = [since + timedelta(days=offset) for offset in range((until - since).days + 1)]
    return [
        day
        for day in days
        if not context.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=drop_notifications.key, asset_partitions=[day.isoformat()]
            ),
            limit=1,
        ).records
    ]

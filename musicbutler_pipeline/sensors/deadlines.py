"""A day whose owed emails are not all sent by its deadline e-mails the operator, once per day.

The deadline is ``MUSICBUTLER_SEND_DEADLINE_HOURS`` (default 6) after the partition's end, read at
each tick. Days from ``MUSICBUTLER_MAX_SEND_AGE_DAYS`` + 1 ago to today are looked at: an older
day was told about when its deadline passed. Rejected addresses alone do not count (the
`every_owed_email_sent` check warns about them); temporary failures, unknown outcomes, claims
without outcome and emails never attempted do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from musicbutler_pipeline.partitions import daily_partitions, latest_partition_day
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import (
    ONCE,
    SEND_DEADLINE,
    alert_operator,
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
        oldest = today - timedelta(days=settings.max_send_age_days + 1)
        allowed = timedelta(hours=settings.send_deadline_hours)
        late = []
        for day in SendLedger(warehouse.engine).unsent_days(oldest, today):
            window = daily_partitions.time_window_for_partition_key(day.partition_date.isoformat())
            deadline = window.end + allowed
            if day.needs_attention and now >= deadline:
                late.append(day.partition_date.isoformat())
                alert_operator(
                    warehouse.engine,
                    SEND_DEADLINE,
                    missed_deadline_text(day, deadline),
                    operator_email=settings.operator_email,
                    mail_from=mailer.sender(),
                    mailer=mailer.open(),
                    now=now,
                    claim=f"{SEND_DEADLINE}:{day.partition_date}",
                    period=ONCE,
                )
        if late:
            return SkipReason(f"past the send deadline with owed emails unsent: {', '.join(late)}")
        return SkipReason(
            f"every day from {oldest} to {today} past its deadline "
            f"(MUSICBUTLER_SEND_DEADLINE_HOURS={settings.send_deadline_hours}) is sent"
        )

    return send_deadline_sensor

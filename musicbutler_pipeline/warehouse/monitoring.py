"""The scheduler-monitoring tables: each scheduler's presence, the signals of a second one, and
the operator alerts claimed at most once a period across hosts (see domain/schedulers.py)."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, select

from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD, Presence, Signal
from musicbutler_pipeline.warehouse.dialect import as_utc, serialized_write, upsert_insert
from musicbutler_pipeline.warehouse.schema import (
    operator_alerts,
    scheduler_presence,
    scheduler_signals,
)


def record_presence(
    engine: Engine,
    *,
    pid: int,
    code_version: str,
    now: datetime,
    started_at: datetime | None = None,
) -> None:
    host = socket.gethostname()
    with engine.begin() as connection:
        statement = upsert_insert(connection, scheduler_presence).values(
            host=host,
            daemon_pid=pid,
            first_seen=now,
            last_seen=now,
            code_version=code_version,
            started_at=started_at,
        )
        # A different start time under the same (host, pid) is a new process (pid 1 in a
        # restarted container): its lifetime starts now.
        restarted = scheduler_presence.c.started_at.is_distinct_from(statement.excluded.started_at)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["host", "daemon_pid"],
                set_={
                    "last_seen": now,
                    "code_version": code_version,
                    "started_at": statement.excluded.started_at,
                    "first_seen": case(
                        (restarted, statement.excluded.first_seen),
                        else_=scheduler_presence.c.first_seen,
                    ),
                },
            )
        )


def recent_presences(engine: Engine, *, since: datetime) -> list[Presence]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(scheduler_presence).where(scheduler_presence.c.last_seen >= since)
        ).all()
    return [
        Presence(
            row.host,
            row.daemon_pid,
            as_utc(row.first_seen),
            as_utc(row.last_seen),
            row.code_version,
            as_utc(row.started_at) if row.started_at else None,
        )
        for row in rows
    ]


def record_signal(
    engine: Engine, signal: str, subject: str, detail: str, *, now: datetime, refresh: bool = True
) -> None:
    """Record one piece of evidence; any number of observers share its row. Ongoing evidence is
    refreshed while it is observed; a one-off event (``refresh=False``) keeps its first time."""
    with engine.begin() as connection:
        statement = upsert_insert(connection, scheduler_signals).values(
            signal=signal,
            subject=subject[:255],
            detail=detail[:4000],
            host=socket.gethostname(),
            pid=os.getpid(),
            first_seen=now,
            last_seen=now,
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["signal", "subject"],
                set_={"last_seen": now, "detail": statement.excluded.detail},
            )
            if refresh
            else statement.on_conflict_do_nothing(index_elements=["signal", "subject"])
        )


def recent_signals(engine: Engine, *, since: datetime) -> list[Signal]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(scheduler_signals)
            .where(scheduler_signals.c.last_seen >= since)
            .order_by(scheduler_signals.c.first_seen)
        ).all()
    return [
        Signal(
            row.signal,
            row.subject,
            row.detail,
            row.host,
            row.pid,
            as_utc(row.first_seen),
            as_utc(row.last_seen),
        )
        for row in rows
    ]


def claim_alert(
    engine: Engine, kind: str, message: str, *, now: datetime, period: timedelta = ALERT_PERIOD
) -> bool:
    """True for the first caller in ``period``, across all processes and hosts.

    A sliding period: a problem seen at 14:59:53 is not alerted again at 15:00:03. Claims of one
    kind are serialized (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), and the
    row's key, the period it falls in, still keeps two claims that meet from both inserting.
    """
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    period_start = epoch + ((now - epoch) // period) * period
    with serialized_write(engine, f"operator_alert:{kind}") as connection:
        recent = connection.execute(
            select(operator_alerts.c.created_at)
            .where(operator_alerts.c.kind == kind, operator_alerts.c.created_at > now - period)
            .limit(1)
        ).first()
        if recent is not None:
            return False
        result = connection.execute(
            upsert_insert(connection, operator_alerts)
            .values(
                kind=kind,
                period_start=period_start,
                message=message[:4000],
                host=socket.gethostname(),
                pid=os.getpid(),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["kind", "period_start"])
        )
    return result.rowcount == 1


def latest_alert(engine: Engine, kind: str, *, since: datetime) -> tuple[datetime, str] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(operator_alerts.c.created_at, operator_alerts.c.message)
            .where(operator_alerts.c.kind == kind, operator_alerts.c.created_at >= since)
            .order_by(operator_alerts.c.created_at.desc())
            .limit(1)
        ).first()
    return (as_utc(row.created_at), row.message) if row else None

"""Seeing a second scheduler, and telling the operator once an hour. No Dagster imports.

Dagster tolerates two ``dagster-daemon`` processes on one instance: both fire every schedule tick,
and the only sign is a log line. We watch from two sides:

* presence: our sensor records, on each evaluation, which daemon process evaluated it. Two
  processes whose lifetimes overlap are two schedulers (a restart does not overlap);
* heartbeats: the instance keeps one SCHEDULER heartbeat row that each daemon overwrites with its
  own id, so with two daemons the id seen at successive ticks goes back to one seen before.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlalchemy import Engine, select

from musicbutler_pipeline.warehouse.dialect import as_utc, upsert_insert
from musicbutler_pipeline.warehouse.schema import operator_alerts, scheduler_presence

logger = logging.getLogger(__name__)

DUPLICATE_SCHEDULER = "duplicate_scheduler"
ALERT_PERIOD = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Presence:
    host: str
    daemon_pid: int
    first_seen: datetime
    last_seen: datetime
    code_version: str

    def describe(self) -> str:
        return (
            f"pid {self.daemon_pid} on {self.host} (code {self.code_version}, "
            f"seen {self.first_seen:%H:%M:%S}-{self.last_seen:%H:%M:%S} UTC)"
        )


def daemon_pid() -> int:
    """The ``dagster-daemon`` process this code runs under.

    Sensors run in a code server the daemon starts; walk up the parents to the daemon itself so
    each scheduler counts once, whichever of its children evaluates the sensor.
    """
    pid = os.getpid()
    for _ in range(5):
        parent = _parent(pid)
        if parent is None:
            break
        if "dagster-daemon" in _cmdline(parent) or "dagster_daemon" in _cmdline(parent):
            return parent
        pid = parent
    return os.getppid()


def _parent(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    parent = int(fields[1])
    return parent if parent > 1 else None


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def record_presence(engine: Engine, *, pid: int, code_version: str, now: datetime) -> None:
    host = socket.gethostname()
    with engine.begin() as connection:
        statement = upsert_insert(connection, scheduler_presence).values(
            host=host, daemon_pid=pid, first_seen=now, last_seen=now, code_version=code_version
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["host", "daemon_pid"],
                set_={"last_seen": now, "code_version": code_version},
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
        )
        for row in rows
    ]


def overlapping(presences: list[Presence]) -> list[Presence]:
    """The presences whose lifetimes overlap another's: concurrent schedulers."""
    found: set[int] = set()
    for i, first in enumerate(presences):
        for j, second in enumerate(presences):
            if (
                i < j
                and first.first_seen < second.last_seen
                and second.first_seen < first.last_seen
            ):
                found.update((i, j))
    return [presences[i] for i in sorted(found)]


def heartbeat_ids_alternate(ids: list[str]) -> bool:
    """Whether a sequence of observed heartbeat owners returns to an earlier owner (A, B, A):
    two daemons overwriting one heartbeat. A restart only ever moves on (A, A, B, B)."""
    owners: list[str] = []
    for daemon_id in ids:
        if owners and owners[-1] == daemon_id:
            continue
        if daemon_id in owners:
            return True
        owners.append(daemon_id)
    return False


def claim_alert(
    engine: Engine, kind: str, message: str, *, now: datetime, period: timedelta = ALERT_PERIOD
) -> bool:
    """True for the first caller in this period, across all processes and hosts."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    period_start = epoch + ((now - epoch) // period) * period
    with engine.begin() as connection:
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


def alert_email(*, mail_from: str, to: str, subject: str, body: str, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[MusicButler] {subject}"
    message["From"] = mail_from
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=mail_from.rpartition("@")[2].strip("> ") or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message

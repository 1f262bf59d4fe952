"""Seeing a second scheduler, and telling the operator once an hour. No Dagster imports.

Dagster tolerates two ``dagster-daemon`` processes on one instance: both fire every schedule tick,
and the only sign is a log line. Every signal below lands in the warehouse, so ``musicbutler
doctor`` on any host sees what any other host saw:

* presence: a thread in each scheduler's code server writes (host, daemon pid, daemon start time,
  code version) every few seconds. Two presences whose lifetimes overlap by more than a period are
  two schedulers; a restart never overlaps (the old daemon is gone before the new one starts);
* heartbeats: the instance keeps one heartbeat row per daemon type that each daemon overwrites
  with its own id every 30 s. Sampled every few seconds, an owner going back to one seen before
  (A, B, A) is two daemons, even when one of them runs old code without the presence thread;
* Dagster's own "Another SCHEDULER daemon is still sending heartbeats" line, which
  ``musicbutler daemon`` reads from its child;
* two runs launched for one schedule tick.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlalchemy import Engine, case, select

from musicbutler_pipeline.warehouse.dialect import as_utc, serialized_write, upsert_insert
from musicbutler_pipeline.warehouse.schema import (
    operator_alerts,
    scheduler_presence,
    scheduler_signals,
)

logger = logging.getLogger(__name__)

DUPLICATE_SCHEDULER = "duplicate_scheduler"
ALERT_PERIOD = timedelta(hours=1)
# Each scheduler writes its presence this often; heartbeats are sampled twice as often, several
# times per Dagster heartbeat interval (30 s), so that every owner of a row is seen.
PRESENCE_PERIOD = timedelta(seconds=5)
HEARTBEAT_SAMPLE_PERIOD = timedelta(seconds=2)
# Evidence younger than this is "now": a second scheduler is reported within it of being seen, and
# the report clears within it of the last sighting once both are stopped.
EVIDENCE_WINDOW = timedelta(seconds=60)

HEARTBEAT_SIGNAL = "heartbeat"
DAEMON_LOG_SIGNAL = "daemon_log"
DOUBLE_TICK_SIGNAL = "double_tick"


@dataclass(frozen=True, slots=True)
class Presence:
    host: str
    daemon_pid: int
    first_seen: datetime
    last_seen: datetime
    code_version: str
    started_at: datetime | None = None

    def describe(self) -> str:
        started = f"started {self.started_at:%H:%M:%S}, " if self.started_at else ""
        return (
            f"pid {self.daemon_pid} on {self.host} (code {self.code_version}, {started}"
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
        if _is_scheduler(_cmdline(parent)):
            return parent
        pid = parent
    return os.getppid()


@dataclass(frozen=True, slots=True)
class SchedulerProcess:
    """The scheduler (a ``dagster-daemon``, or ``dagster dev`` which runs one) a process serves."""

    pid: int
    started_at: datetime | None

    def alive(self) -> bool:
        return process_started_at(self.pid) == self.started_at


# `dagster-daemon run`, `python -m dagster._daemon run` (what `dagster dev` starts) and `dagster
# dev` itself, whose code servers are its own children rather than its daemon's.
_SCHEDULER_COMMAND = re.compile(r"(dagster-daemon|dagster[._]_?daemon) run|\bdagster dev\b")
_CODE_SERVER_COMMAND = re.compile(r"\bdagster api grpc\b|\bdagster code-server start\b")


def _is_scheduler(cmdline: str) -> bool:
    return bool(_SCHEDULER_COMMAND.search(cmdline))


def scheduler_of_this_process() -> SchedulerProcess | None:
    """The scheduler whose code server this process is, or None.

    A scheduler's code server imports our definitions and lives as long as the scheduler, so it
    is where a presence is written from. Run workers (children of the code server), the
    webserver's own code server, tests and CLI commands are no scheduler's code server.
    """
    if not _CODE_SERVER_COMMAND.search(_cmdline(os.getpid())):
        return None
    pid = os.getpid()
    for _ in range(3):
        parent = _parent(pid)
        if parent is None:
            return None
        if _is_scheduler(_cmdline(parent)):
            return SchedulerProcess(parent, process_started_at(parent))
        if parent == 1:
            return None
        pid = parent
    return None


def _parent(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    parent = int(fields[1])
    # In a PID namespace the daemon itself can be pid 1.
    return parent if parent >= 1 else None


def process_started_at(pid: int) -> datetime | None:
    """When a process started (Linux /proc), to tell a pid reused by a later process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    ticks = int(fields[19])  # field 22 of stat(5), counted from the state field (3)
    seconds = round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)
    return datetime.fromtimestamp(seconds, UTC)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


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


def overlapping(presences: list[Presence], margin: timedelta = timedelta(0)) -> list[Presence]:
    """The presences whose lifetimes overlap another's by more than ``margin``: concurrent
    schedulers. A restart leaves a gap instead; the margin absorbs write delays and clock skew."""
    found: set[int] = set()
    for i, first in enumerate(presences):
        for j, second in enumerate(presences):
            if i < j and (
                min(first.last_seen, second.last_seen) - max(first.first_seen, second.first_seen)
                > margin
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


@dataclass(frozen=True, slots=True)
class Signal:
    """Evidence of a second scheduler, and who observed it (host, pid) when."""

    signal: str
    subject: str
    detail: str
    host: str
    pid: int
    first_seen: datetime
    last_seen: datetime


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


@dataclass
class HeartbeatWatch:
    """The owners of each daemon type's heartbeat row, sampled faster than it is written.

    Only owners seen within ``memory`` count, so the evidence ends once the second daemon stops
    even while the first keeps running.
    """

    memory: timedelta = timedelta(seconds=60)
    _owners: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)

    def observe(self, owners: Mapping[str, str], now: datetime) -> dict[str, list[str]]:
        """Feed one sample {daemon type: daemon id}; returns the daemon types whose row went back
        to an earlier owner, with the owners in the order seen."""
        alternating: dict[str, list[str]] = {}
        for daemon_type, daemon_id in owners.items():
            seen = [
                (owner, at)
                for owner, at in self._owners.get(daemon_type, [])
                if at >= now - self.memory
            ]
            if seen and seen[-1][0] == daemon_id:
                seen[-1] = (daemon_id, now)
            else:
                seen.append((daemon_id, now))
            self._owners[daemon_type] = seen
            ids = [owner for owner, _ in seen]
            if heartbeat_ids_alternate(ids):
                alternating[daemon_type] = ids
        return alternating


def double_launched_ticks(
    runs: Iterable[tuple[str, str, str | None, str]],
) -> dict[tuple[str, str, str | None], list[str]]:
    """(schedule, tick time, partition) launched by more than one run: one per scheduler.

    ``runs`` are (schedule name, scheduled execution time, partition, run id) of scheduled runs
    that are not re-executions.
    """
    launched: dict[tuple[str, str, str | None], list[str]] = {}
    for schedule, tick, partition, run_id in runs:
        launched.setdefault((schedule, tick, partition), []).append(run_id)
    return {key: ids for key, ids in launched.items() if len(ids) > 1}


_ANOTHER_DAEMON = re.compile(r"Another (\w+) daemon is still sending heartbeats")


def another_daemon_in_log(line: str) -> str | None:
    """The daemon type of Dagster's "Another … daemon is still sending heartbeats" line."""
    match = _ANOTHER_DAEMON.search(line)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class SchedulerEvidence:
    """What the warehouse shows about schedulers right now, from every host."""

    presences: list[Presence]
    concurrent: list[Presence]
    signals: list[Signal]

    @property
    def problem(self) -> str | None:
        if not self.concurrent and not self.signals:
            return None
        schedulers = self.concurrent or self.presences
        count = max(len(schedulers), 2)
        named = "; ".join(p.describe() for p in schedulers)
        if len(schedulers) < 2:
            named += ("; " if named else "") + (
                "and one without a presence record (older code, or another instance's daemon)"
            )
        parts = [f"{count} scheduler daemons are running on this instance: {named}"]
        parts += [f"{s.signal}: {s.detail} (seen by pid {s.pid} on {s.host})" for s in self.signals]
        return " | ".join(parts)


def scheduler_evidence(
    engine: Engine, *, now: datetime, window: timedelta = EVIDENCE_WINDOW
) -> SchedulerEvidence:
    presences = recent_presences(engine, since=now - window)
    return SchedulerEvidence(
        presences,
        overlapping(presences, margin=2 * PRESENCE_PERIOD),
        recent_signals(engine, since=now - window),
    )


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

"""Seeing a second scheduler: the evidence and the rules that judge it (pure; the warehouse
stores it, services/schedulers.py assembles it, services/alerts.py tells the operator).

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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


def evidence(presences: list[Presence], signals: list[Signal]) -> SchedulerEvidence:
    """The evidence from what the warehouse holds: presences that overlap by more than two
    presence periods (write delays and clock skew) are concurrent schedulers."""
    return SchedulerEvidence(presences, overlapping(presences, margin=2 * PRESENCE_PERIOD), signals)

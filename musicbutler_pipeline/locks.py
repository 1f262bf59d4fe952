"""Exclusive locks that die with their holder: PostgreSQL advisory locks, or file locks.

Used for "one process sends day D" (keyed on the warehouse) and "one scheduler per instance"
(keyed on the Dagster instance's storage). Both kinds are released by the operating system or
the database server when the holding process or its connection dies, so a crash never leaves a
lock behind that an operator must clear by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import filelock
import psycopg2
from sqlalchemy.engine import URL, make_url

from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.warehouse.dialect import advisory_key

logger = logging.getLogger(__name__)


class LockLost(RuntimeError):
    """A lock this process held is no longer held: whoever checks must stop what it guards."""


class ExclusiveLock(ABC):
    """A named, non-reentrant, process-wide exclusive lock."""

    name: str

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if free; never waits."""

    @abstractmethod
    def release(self) -> None: ...

    @abstractmethod
    def holder(self) -> str:
        """Who holds it, as far as can be told (for messages)."""

    def is_healthy(self) -> bool:
        """Whether a held lock is still held (a database connection may drop)."""
        return True

    def ensure_held(self) -> None:
        """Raise LockLost unless this process still holds the lock.

        An advisory lock lives as long as its connection: when the server terminates that
        backend, or the network drops it, another process can take the lock at once.
        """
        if not self.is_healthy():
            raise LockLost(
                f"the lock {self.name} is no longer held (its database connection died): "
                "another process may have taken it"
            )

    def acquire(self, *, wait: bool, poll_seconds: float = 2.0) -> bool:
        while True:
            if self.try_acquire():
                return True
            if not wait:
                return False
            time.sleep(poll_seconds)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _identity() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class FileLock(ExclusiveLock):
    """``flock`` on a file; the holder's identity is written beside it for messages."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.path = path
        self._lock = filelock.FileLock(str(path), timeout=0, is_singleton=False)
        self._holder_file = path.with_name(path.name + ".holder")

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        self._holder_file.write_text(json.dumps(_identity()))
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._holder_file.unlink(missing_ok=True)
            self._lock.release(force=True)

    def holder(self) -> str:
        try:
            who = json.loads(self._holder_file.read_text())
        except (OSError, ValueError):
            return "another process"
        return f"pid {who['pid']} on {who['host']} (since {who['since']})"


class AdvisoryLock(ExclusiveLock):
    """``pg_try_advisory_lock`` on a dedicated connection held for the lock's lifetime."""

    def __init__(self, url: str | URL, name: str) -> None:
        self.name = name
        self.url = make_url(url)
        self.key = advisory_key(name)
        self._connection: psycopg2.extensions.connection | None = None

    def _connect(self) -> psycopg2.extensions.connection:
        url = self.url.set(drivername="postgresql")
        who = _identity()
        connection = psycopg2.connect(
            url.render_as_string(hide_password=False),
            application_name=f"musicbutler {self.name} pid {who['pid']} on {who['host']}"[:63],
            connect_timeout=10,
        )
        connection.autocommit = True
        return connection

    def try_acquire(self) -> bool:
        connection = self._connect()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            (acquired,) = cursor.fetchone() or (False,)
        if acquired:
            self._connection = connection
        else:
            connection.close()
        return bool(acquired)

    def _lock_ids(self) -> tuple[int, int]:
        """How pg_locks shows a one-bigint advisory lock: the key's high and low 32 bits as
        (classid, objid), with objsubid 1. Split here because the key may be negative."""
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        return unsigned >> 32, unsigned & 0xFFFFFFFF

    def is_healthy(self) -> bool:
        if self._connection is None:
            return False
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted "
                    "AND classid = %s AND objid = %s AND objsubid = 1",
                    self._lock_ids(),
                )
                (held,) = cursor.fetchone() or (0,)
        except psycopg2.Error:
            return False
        return held == 1

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with contextlib.suppress(psycopg2.Error), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        finally:
            connection.close()  # also when the connection died: the lock went with it

    def holder(self) -> str:
        try:
            connection = self._connect()
        except psycopg2.Error:
            return "another process"
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT a.application_name, a.client_addr, a.backend_start "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                    self._lock_ids(),
                )
                row = cursor.fetchone()
        finally:
            connection.close()
        if row is None:
            return "another process"
        application, address, since = row
        return f"{application or 'a session'} ({address or 'local socket'}, since {since:%H:%M:%S})"


def warehouse_lock(warehouse_url: str, name: str) -> ExclusiveLock:
    """A lock scoped to the warehouse: advisory on PostgreSQL, a file beside a SQLite file."""
    url = make_url(warehouse_url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(url, f"musicbutler:{name}")
    database = Path(url.database or "memory").absolute()
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return FileLock(database.with_name(f"{database.name}.{safe}.lock"), name)


def send_lock(warehouse_url: str, day: object, shard: Shard | None = None) -> ExclusiveLock:
    """Held by whoever is sending day ``day``'s digests right now; with a ``shard`` of a
    sharded day, by whoever sends that shard (the day's shards run in parallel, two senders of
    one shard do not). The whole day (one shard) keeps the day's lock name."""
    if shard is None or shard.is_whole_day:
        return warehouse_lock(warehouse_url, f"send-{day}")
    return warehouse_lock(warehouse_url, f"send-{day}-shard-{shard.key}")


SCHEDULER_LOCK_NAME = "musicbutler:scheduler-daemon"


def scheduler_lock(*, postgres_url: str | None, root_directory: str | Path) -> ExclusiveLock:
    """The lock that makes a scheduler the only one for a Dagster instance: an advisory lock on
    the instance's own database when its storage is PostgreSQL, else a file in its home."""
    if postgres_url:
        return AdvisoryLock(postgres_url, SCHEDULER_LOCK_NAME)
    return FileLock(Path(root_directory) / "musicbutler-daemon.lock", SCHEDULER_LOCK_NAME)


@contextlib.contextmanager
def holding(lock: ExclusiveLock) -> Iterator[bool]:
    """``with holding(lock) as acquired:`` releases on exit only if acquired."""
    acquired = lock.try_acquire()
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()

"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects import postgresql, sqlite

# SQLite allows 32,766 bound parameters per statement; stay well below it.
PARAMETER_CHUNK = 500

UpsertInsert = postgresql.Insert | sqlite.Insert
"""An INSERT with ``on_conflict_do_nothing``, ``on_conflict_do_update`` and ``excluded``: both
dialects spell them alike for the arguments we use (``index_elements``, ``index_where``, ``set_``,
``where``)."""


def upsert_insert(connection: Connection, table: Table) -> UpsertInsert:
    """An INSERT that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"dialect {connection.dialect.name!r} is not supported")


def advisory_key(name: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory lock key for a name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


@contextmanager
def serialized_write(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction that no other ``serialized_write`` of the same name runs beside.

    Replacing a partition (delete, then insert) in two concurrent transactions collides on
    PostgreSQL under READ COMMITTED: neither sees the other's rows until both insert. A
    transaction-scoped advisory lock queues the second writer until the first commits. On SQLite,
    BEGIN IMMEDIATE (see engine.py) already lets one writer in at a time.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)}
            )
        yield connection


def refresh_statistics(engine: Engine, table: Table) -> None:
    """Update the planner's statistics for ``table`` now (PostgreSQL).

    A day's drops (~450k rows at 100,000 subscribers) stay under autovacuum's 10% threshold, so
    without this the mailer's batched reads plan against stale statistics: measured by
    benchmarks/scale.py, streaming all digests took 94 s instead of 27 s.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text(f"ANALYZE {table.name}"))


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were all written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

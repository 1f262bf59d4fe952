"""Retention: drops and source pages of days older than their window are deleted.

Only these two tables grow by the day without being a record of what was sent: ``drops`` is
recomputed by ``replace_drops`` whenever a day is run again, and ``source_pages`` are the raw
pages a day was derived from. ``sends`` and ``announcements`` are the exactly-once record (a
release group announced once is never announced again) and are never pruned, nor are the tables
that hold no per-day rows.

Deletes are set-based and bounded: each transaction deletes at most ``batch_rows`` rows picked by
primary key, so neither PostgreSQL nor SQLite holds a lock (SQLite's is the whole file) for the
minutes a quarter of a year of drops would take in one statement, and a pruning that stops part
way leaves nothing half done: the next one carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import ColumnElement, Engine, Table, delete, func, select, tuple_

from musicbutler_pipeline.warehouse.dialect import refresh_statistics
from musicbutler_pipeline.warehouse.schema import drop_exclusions, drops, source_pages

logger = logging.getLogger(__name__)

# About 1 MB of drops a transaction: a batch commits in tens of milliseconds on either dialect.
BATCH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Pruned:
    """One table's pruning: rows of partitions before ``before`` deleted (or, on a dry run,
    that would be)."""

    table: str
    before: date
    rows: int
    batches: int


def retention_start(today: date, keep_days: int) -> date:
    """The first partition kept when ``keep_days`` days are kept: ``today`` and the
    ``keep_days`` days before it stay."""
    return today - timedelta(days=keep_days)


def prune_drops(
    engine: Engine, before: date, *, dry_run: bool = False, batch_rows: int = BATCH_ROWS
) -> Pruned:
    """Delete the drops of partitions before ``before``, and their ``drop_exclusions`` (the
    why-not of the same days, which grows as fast; not counted in the result)."""
    pruned = _prune(engine, drops, drops.c.partition_date < before, before, dry_run, batch_rows)
    exclusions = _prune(
        engine,
        drop_exclusions,
        drop_exclusions.c.partition_date < before,
        before,
        dry_run,
        batch_rows,
    )
    logger.info("drop_exclusions before %s: %d rows pruned", before, exclusions.rows)
    return pruned


def prune_source_pages(
    engine: Engine, before: date, *, dry_run: bool = False, batch_rows: int = BATCH_ROWS
) -> Pruned:
    """Delete the source pages of partitions before ``before``, except each source's first
    partition: it records where the pipeline started watching (``pages.watch_start``), which keeps
    re-runs of old days from taking back catalogue for new releases."""
    first = source_pages.alias("first_fetched")
    first_partition = (
        select(func.min(first.c.partition_date))
        .where(first.c.source == source_pages.c.source)
        .scalar_subquery()
    )
    old = (source_pages.c.partition_date < before) & (
        source_pages.c.partition_date > first_partition
    )
    return _prune(engine, source_pages, old, before, dry_run, batch_rows)


def _prune(
    engine: Engine,
    table: Table,
    old: ColumnElement[bool],
    before: date,
    dry_run: bool,
    batch_rows: int,
) -> Pruned:
    if batch_rows < 1:
        raise ValueError("batch_rows must be 1 or more")
    if dry_run:
        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(table).where(old))
            count = rows.scalar_one()
        return Pruned(table.name, before, count, 0)
    key = tuple_(*table.primary_key.columns)
    batch = select(*table.primary_key.columns).where(old).limit(batch_rows)
    deleted = batches = 0
    while True:
        with engine.begin() as connection:
            rows = connection.execute(delete(table).where(key.in_(batch))).rowcount
        deleted += rows
        batches += 1
        if rows < batch_rows:
            break
    if deleted:
        # The planner's partition_date histogram still holds the deleted days until autovacuum's
        # ANALYZE, which a table of 90 days reaches only every few weeks.
        refresh_statistics(engine, table)
    return Pruned(table.name, before, deleted, batches)


def prune_warehouse(
    engine: Engine,
    today: date,
    *,
    keep_drops_days: int,
    keep_source_pages_days: int,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> tuple[Pruned, Pruned]:
    """Prune ``drops`` and ``source_pages`` to their retention windows. Safe to repeat."""
    return (
        prune_drops(
            engine, retention_start(today, keep_drops_days), dry_run=dry_run, batch_rows=batch_rows
        ),
        prune_source_pages(
            engine,
            retention_start(today, keep_source_pages_days),
            dry_run=dry_run,
            batch_rows=batch_rows,
        ),
    )

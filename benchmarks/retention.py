#!/usr/bin/env python3
"""The daily prune at scale: how fast `prune_warehouse` deletes old drops, in its batches.

    .venv/bin/python -m benchmarks.retention [--url URL] [--subscribers 10000]
        [--drops-per-subscriber 45] [--old-days 8] [--new-days 2] [--batch-rows 10000]

Loads ``--subscribers`` x ``--drops-per-subscriber`` drops on each of ``--old-days`` days past
the default 90-day retention and ``--new-days`` recent ones (4,500,000 rows at the defaults: a day
is 450,000 drops, as at 100,000 subscribers), then times the dry run and the prune with the
project's own function and checks that exactly the old days went. About a minute on 2 cores.
Without ``--url``: a throwaway PostgreSQL database, as in benchmarks/scale.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy import Connection, func, select, text

from benchmarks.scale import warehouse
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.retention import BATCH_ROWS, prune_warehouse
from musicbutler_pipeline.warehouse.schema import drops

TODAY = date(2026, 12, 1)
KEEP_DROPS_DAYS = 90


def _numbers(connection: Connection, name: str) -> str:
    """A FROM item ``name(i)`` of 1..:n, spelled for the dialect."""
    if connection.dialect.name == "postgresql":
        return f"generate_series(1, :n) AS {name}(i)"
    return (
        f"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < :n) "
        f"SELECT i FROM r) AS {name}"
    )


def load(connection: Connection, subscribers: int, per_subscriber: int, days: list[date]) -> None:
    connection.execute(
        text(
            "INSERT INTO subscribers (email, email_key, subscribed_at, updated_at) "
            "SELECT 's' || i || '@example.org', 's' || i || '@example.org', "
            f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM {_numbers(connection, 'g')}"
        ),
        {"n": subscribers},
    )
    for day in days:
        connection.execute(
            text(
                "INSERT INTO drops (partition_date, subscriber_id, release_group_mbid, "
                "artist_mbid, artist_name) SELECT :day, s.id, 'rg-' || g.i, 'artist', 'Artist' "
                f"FROM subscribers AS s, {_numbers(connection, 'g')}"
            ),
            {"day": day, "n": per_subscriber},
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="warehouse URL (default: a throwaway PostgreSQL database)")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--drops-per-subscriber", type=int, default=45)
    parser.add_argument("--old-days", type=int, default=8)
    parser.add_argument("--new-days", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    old = [TODAY - timedelta(days=KEEP_DROPS_DAYS + 1 + n) for n in range(args.old_days)]
    new = [TODAY - timedelta(days=n) for n in range(args.new_days)]
    with warehouse(args.url, keep=False) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            with engine.begin() as connection:
                load(connection, args.subscribers, args.drops_per_subscriber, old + new)
            keep = {"keep_drops_days": KEEP_DROPS_DAYS, "keep_source_pages_days": 30}
            started = time.perf_counter()
            [dry, _] = prune_warehouse(engine, TODAY, dry_run=True, **keep)
            dry_seconds = time.perf_counter() - started
            started = time.perf_counter()
            [pruned, _] = prune_warehouse(engine, TODAY, batch_rows=args.batch_rows, **keep)
            seconds = time.perf_counter() - started
            with engine.connect() as connection:
                left = connection.execute(
                    select(func.count(func.distinct(drops.c.partition_date)))
                ).scalar_one()
        finally:
            engine.dispose()
    expected = args.subscribers * args.drops_per_subscriber * args.old_days
    if (dry.rows, pruned.rows, left) != (expected, expected, args.new_days):
        print(
            f"wrong: counted {dry.rows}, deleted {pruned.rows}, {left} days left", file=sys.stderr
        )
        return 1
    print(
        f"{engine.dialect.name}: counted {dry.rows:,} old drops in {dry_seconds:.2f} s; deleted "
        f"them in {pruned.batches} batches of {args.batch_rows:,} in {seconds:.1f} s "
        f"({pruned.rows / seconds:,.0f} rows/s, {seconds / pruned.batches * 1000:.0f} ms a batch)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""user_libraries + user_drops at scale, with and without preferences rows.

    .venv/bin/python -m benchmarks.drops [--url URL] [--subscribers 100000] [--runs 3]
        [--preferences-share 0.1] [--seed 1] [--explain] [--keep] [--reuse]

The world is benchmarks/scale.py's (same population, same day of 1,000 release groups, loaded
the same way). Measured with the project's own functions, each the median of ``--runs``:

1. ``library_summary`` (what the ``user_libraries`` asset reads for a CSV-only library source);
2. the ``user_drops`` asset's warehouse work: ``replace_drops``, ``drop_stats``,
   ``exclusion_counts`` and ``top_drops`` in one ``serialized_write``, then
   ``refresh_statistics(drops)``: once on an empty partition (the day's first run), then its
   reruns with nothing changed; ``replace_drops`` alone (a rerun), statement by statement;

first with no preferences rows, then with ``--preferences-share`` of the subscribers given a
preferences row (some release type deselected, a quarter of them appearances off, a tenth of
them weekly) and about three blocked artists each. Each phase prints a fingerprint (SHA-256 of
the day's ordered drops and drop_exclusions rows), so two versions of the code can be checked
for identical results on the same world (``--keep``, then ``--reuse --url ...``).

Peak RSS is this process's (VmHWM). ``--explain`` logs EXPLAIN ANALYZE (PostgreSQL) or EXPLAIN
QUERY PLAN (SQLite) of each ``replace_drops`` statement, in a rolled-back transaction.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, literal, select, update

from benchmarks.scale import (
    DAY,
    FETCHED_AT,
    Population,
    StatementLog,
    explain,
    load_postgresql,
    load_sqlite,
    release_groups_of_day,
    rss_mib,
    vacuum_analyze,
    warehouse,
)
from musicbutler_pipeline.domain.preferences import WEEKDAYS
from musicbutler_pipeline.warehouse.dialect import refresh_statistics, serialized_write
from musicbutler_pipeline.warehouse.drops import drop_stats, exclusion_counts, replace_drops
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.health import top_drops
from musicbutler_pipeline.warehouse.libraries import library_summary
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.releases import replace_release_groups
from musicbutler_pipeline.warehouse.schema import (
    blocked_artists,
    drop_exclusions,
    drops,
    library_artists,
    subscriber_preferences,
    subscribers,
)

log = logging.getLogger("benchmarks.drops")

SET_AT = datetime(2026, 11, 1, tzinfo=UTC)


def median_of(runs: int, function: Callable[[], object]) -> tuple[float, list[float]]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), seconds


def user_drops_work(engine: Engine) -> None:
    """What the user_drops asset does in the warehouse."""
    with serialized_write(engine, "user_drops") as connection:
        replace_drops(connection, DAY)
        drop_stats(connection, DAY)
        exclusion_counts(connection, DAY)
        top_drops(connection, DAY)
    refresh_statistics(engine, drops)


def fingerprint(engine: Engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table, order in (
            (drops, (drops.c.subscriber_id, drops.c.release_group_mbid)),
            (
                drop_exclusions,
                (
                    drop_exclusions.c.subscriber_id,
                    drop_exclusions.c.release_group_mbid,
                    drop_exclusions.c.artist_mbid,
                ),
            ),
        ):
            for row in connection.execute(
                select(*(column for column in table.c if column.name != "partition_date"))
                .where(table.c.partition_date == DAY)
                .order_by(*order)
            ):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]


def add_preferences(engine: Engine, share: float) -> int:
    """Preferences rows for every ``1 / share``-th subscriber, ~3 blocked artists each."""
    every = max(1, round(1 / share))
    chosen = subscribers.c.id % every == 0
    with engine.begin() as connection:
        connection.execute(
            insert(subscriber_preferences).from_select(
                ["subscriber_id", "updated_at"],
                select(
                    subscribers.c.id, literal(SET_AT, subscriber_preferences.c.updated_at.type)
                ).where(chosen),
            )
        )
        prefs = subscriber_preferences.c
        rank = prefs.subscriber_id / every
        # Half of them drop singles, a third of them EPs, a fifth live releases; a quarter
        # appearances off; a tenth weekly (on some weekday, most not the day's).
        connection.execute(update(subscriber_preferences).where(rank % 2 == 0).values(single=False))
        connection.execute(update(subscriber_preferences).where(rank % 3 == 0).values(ep=False))
        connection.execute(update(subscriber_preferences).where(rank % 5 == 0).values(live=False))
        connection.execute(
            update(subscriber_preferences).where(rank % 4 == 1).values(appearances=False)
        )
        for offset, weekday in enumerate(WEEKDAYS):
            connection.execute(
                update(subscriber_preferences)
                .where(rank % 70 == offset * 10 + 3)
                .values(frequency="weekly", weekday=weekday)
            )
        connection.execute(
            insert(blocked_artists).from_select(
                ["subscriber_id", "artist_mbid", "blocked_at"],
                select(
                    library_artists.c.subscriber_id,
                    library_artists.c.artist_mbid,
                    literal(SET_AT, blocked_artists.c.blocked_at.type),
                ).where(
                    library_artists.c.subscriber_id % every == 0, library_artists.c.id % 20 == 0
                ),
            )
        )
        return connection.execute(
            select(func.count()).select_from(subscriber_preferences)
        ).scalar_one()


def measure(engine: Engine, args: argparse.Namespace, label: str) -> None:
    libraries, library_runs = median_of(args.runs, lambda: _summary(engine))
    # The day's first user_drops (an empty partition), then its reruns with nothing changed.
    with engine.begin() as connection:
        connection.execute(delete(drops).where(drops.c.partition_date == DAY))
        connection.execute(delete(drop_exclusions).where(drop_exclusions.c.partition_date == DAY))
    if engine.dialect.name == "postgresql":
        vacuum_analyze(engine, "drops")
    fresh, _ = median_of(1, lambda: user_drops_work(engine))
    print(f"[{label}] user_drops work, first run of the day: {fresh:.2f} s")
    work, work_runs = median_of(args.runs, lambda: user_drops_work(engine))
    with StatementLog(engine) as statements, serialized_write(engine, "user_drops") as connection:
        replace_drops(connection, DAY)
    with engine.connect() as connection:
        stats = drop_stats(connection, DAY)
        reasons = exclusion_counts(connection, DAY)
    print(f"[{label}] library_summary: median {libraries:.2f} s ({_runs(library_runs)})")
    print(f"[{label}] user_drops work, reruns: median {work:.2f} s ({_runs(work_runs)})")
    print(
        f"[{label}] replace_drops alone: {statements.total():.2f} s, by statement"
        f" {statements.breakdown()}"
    )
    print(
        f"[{label}] user_libraries + user_drops: {libraries + fresh:.2f} s first run,"
        f" {libraries + work:.2f} s rerun"
    )
    print(
        f"[{label}] {stats.drops:,} drops for {stats.subscribers:,} subscribers;"
        f" left out {reasons}; fingerprint {fingerprint(engine)}"
    )
    print(f"[{label}] peak RSS so far {rss_mib():.0f} MiB", flush=True)
    if args.explain:
        for number, statement in enumerate(statements.statements, 1):
            if statement.sql.lstrip().upper().startswith(("INSERT", "CREATE", "WITH", "SELECT")):
                explain(engine, statements, statement, f"replace_drops statement {number}")


def _summary(engine: Engine) -> None:
    with engine.connect() as connection:
        library_summary(connection, DAY)


def _runs(runs: Sequence[float]) -> str:
    return ", ".join(f"{run:.2f}" for run in runs)


def benchmark(url: str, args: argparse.Namespace) -> None:
    engine = make_engine(url)
    backend = engine.dialect.name
    try:
        if not args.reuse:
            upgrade(engine)
            population = Population(args.subscribers, 60, 200_000, args.seed)
            log.info("loading %s subscribers", f"{args.subscribers:,}")
            (load_postgresql if backend == "postgresql" else load_sqlite)(engine, population)
            groups = release_groups_of_day(population, 1000, args.seed, 0.25)
            with engine.begin() as connection:
                replace_release_groups(
                    connection, DAY, groups, source="bench", fetched_at=FETCHED_AT
                )
        else:
            upgrade(engine)
            with engine.begin() as connection:
                connection.execute(delete(blocked_artists))
                connection.execute(delete(subscriber_preferences))
        if backend == "postgresql":
            vacuum_analyze(engine)
        measure(engine, args, "no preferences")
        if args.preferences_share > 0:
            rows = add_preferences(engine, args.preferences_share)
            log.info("%s preferences rows", f"{rows:,}")
            if backend == "postgresql":
                vacuum_analyze(engine)
            measure(engine, args, f"{args.preferences_share:.0%} with preferences")
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preferences-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    parser.add_argument(
        "--reuse", action="store_true", help="--url holds a world this script loaded; measure it"
    )
    args = parser.parse_args(argv)
    if args.reuse and not args.url:
        parser.error("--reuse needs --url")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with warehouse(args.url, keep=args.keep or args.reuse) as url:
        log.info("warehouse %s", url)
        benchmark(url, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

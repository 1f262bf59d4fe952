#!/usr/bin/env python3
"""CSV imports against their floor: `musicbutler subscribers import` and `library import` as
whole processes, beside PostgreSQL's own COPY of the same files, measured in the same run.

    .venv/bin/python -m benchmarks.imports [--follows 1000000] [--dialect postgresql,sqlite]
        [--library-queries] [--json] [--keep-files DIR]

Generates a synthetic world: ``--follows`` / 60 subscribers, each following ~60 distinct artists
(uniform 30-90) drawn Zipf-Mandelbrot from a pool of 200,000 (weight 1 / (rank + 20)), written as
one subscribers CSV and one library CSV with a few bad rows mixed in (bad addresses, bad
identifiers, unknown subscribers, empty names: rows that are well-formed CSV, so COPY reads the
same file). For each dialect, on a fresh warehouse (PostgreSQL: a throwaway database on
127.0.0.1:5432; SQLite: a temporary file), `musicbutler db upgrade`, then each import is run as a
subprocess: wall time, rows/s and peak RSS (``os.wait4``). The floor, in the same run: COPY of the
same file (FORMAT csv, HEADER) into an unindexed table of the same three text columns on
PostgreSQL. ``--library-queries`` then times, on the PostgreSQL warehouse just imported, the
functions the ``user_libraries`` asset runs (``library_stats``, ``top_followed_artists``), three
runs each after ``ANALYZE``, median reported.

Progress goes to stderr; the summary (or with ``--json`` one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from benchmarks.scale import warehouse

log = logging.getLogger("benchmarks.imports")

ARTISTS = 200_000
FOLLOWS_PER_SUBSCRIBER = 60
BAD_EVERY = 50_000  # one bad row (of each file) per this many rows


def generate(folder: Path, follows: int, seed: int) -> dict[str, Any]:
    """Write subscribers.csv and library.csv; return their paths and row counts."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    artists = [str(uuid.UUID(int=pyrng.getrandbits(128), version=4)) for _ in range(ARTISTS)]
    weights = 1.0 / (np.arange(ARTISTS) + 20.0)
    cdf = np.cumsum(weights / weights.sum())
    count = max(1, follows // FOLLOWS_PER_SUBSCRIBER)
    subscribers_csv, library_csv = folder / "subscribers.csv", folder / "library.csv"
    subscriber_rows = library_rows = bad = 0
    with subscribers_csv.open("w") as subs, library_csv.open("w") as lib:
        subs.write("email,name,listenbrainz_user\n")
        lib.write("email,artist_mbid,artist_name\n")
        written = 0
        for n in range(count):
            email = f"Person{n}@Example.org"
            subs.write(f'{email},"Surname {n}, Given",lb_{n}\n')
            subscriber_rows += 1
            if subscriber_rows % BAD_EVERY == 0:
                subs.write(f"not-an-address-{n},Nobody,\n")
                subscriber_rows += 1
            want = follows - written if n == count - 1 else int(rng.integers(30, 91))
            want = max(0, min(want, follows - written))
            # Draws by inverse CDF (searchsorted), distinct per subscriber, in random order.
            draws = np.searchsorted(cdf, rng.random(want * 2 + 8), side="right")
            picks = np.unique(np.minimum(draws, ARTISTS - 1))
            rng.shuffle(picks)
            for index in picks[:want]:
                lib.write(f"{email},{artists[index]},Artist {index}\n")
                library_rows += 1
                written += 1
                if library_rows % BAD_EVERY == 0:
                    kind = (library_rows // BAD_EVERY) % 4
                    lib.write(
                        [
                            f"{email},{artists[index][:-1]},Short id\n",
                            f"stranger{n}@example.com,{artists[index]},Nobody's\n",
                            f"{email},{artists[index]},\n",
                            f"bad..address{n}@example.com,{artists[index]},Bad\n",
                        ][kind]
                    )
                    library_rows += 1
                    bad += 1
    return {
        "subscribers_csv": subscribers_csv,
        "library_csv": library_csv,
        "subscriber_rows": subscriber_rows,
        "library_rows": library_rows,
        "library_bad_rows": bad,
    }


def run_command(url: str, home: Path, *args: str) -> dict[str, Any]:
    """Run ``musicbutler ARGS`` on ``url`` as a process: seconds, peak RSS (MiB), exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    env.update(
        MUSICBUTLER_HOME=str(home),
        MUSICBUTLER_WAREHOUSE_URL=url,
        MUSICBUTLER_SECRET_KEY="benchmark-secret-key-0123456789",
    )
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "musicbutler_pipeline.cli", *args],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        # Reap the child ourselves: wait4 gives its own resource usage (peak RSS), not a sum.
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines() or err.read().strip().splitlines()
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit_code": process.returncode,
        "summary": lines[-1] if lines else "",
    }


def copy_floor(admin_url: str, path: Path) -> float:
    """Seconds for PostgreSQL to COPY ``path`` into a new unindexed table of three text columns."""
    name = f"musicbutler_floor_{uuid.uuid4().hex[:8]}"
    dsn = make_url(admin_url).render_as_string(hide_password=False)
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        floor = psycopg2.connect(make_url(dsn).set(database=name).render_as_string(False))
        try:
            with floor, floor.cursor() as cursor:
                cursor.execute("CREATE TABLE floor (a text, b text, c text)")
            started = time.perf_counter()
            with floor, floor.cursor() as cursor, path.open() as handle:
                cursor.copy_expert("COPY floor FROM STDIN (FORMAT csv, HEADER)", handle)
            return time.perf_counter() - started
        finally:
            floor.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def insert_floor(url: str, path: Path) -> dict[str, float]:
    """The warehouse's own floor for a library import, on a warehouse that holds the subscribers:
    COPY the file into a temporary table, then one INSERT ... SELECT of its good rows into the
    emptied ``library_artists`` (its three indexes and foreign key kept). No validation at all."""
    dsn = make_url(url).render_as_string(hide_password=False)
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("TRUNCATE library_artists")
        with connection, connection.cursor() as cursor, path.open() as handle:
            started = time.perf_counter()
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute("CREATE TEMP TABLE floor (email text, mbid text, name text)")
            cursor.copy_expert("COPY floor FROM STDIN (FORMAT csv, HEADER)", handle)
            copied = time.perf_counter()
            cursor.execute(
                "INSERT INTO library_artists (subscriber_id, artist_mbid, artist_name, source, "
                "followed_at) SELECT s.id, f.mbid, f.name, 'csv', now() FROM floor AS f "
                "JOIN subscribers AS s ON s.email_key = lower(f.email) "
                "WHERE f.name IS NOT NULL AND length(f.mbid) = 36 ORDER BY 1, 2 "
                "ON CONFLICT (subscriber_id, artist_mbid) WHERE unfollowed_on IS NULL DO NOTHING"
            )
            inserted = cursor.rowcount
            done = time.perf_counter()
        return {
            "copy_seconds": copied - started,
            "insert_seconds": done - copied,
            "rows": inserted,
            "seconds": done - started,
        }
    finally:
        connection.close()


def library_queries(url: str) -> dict[str, float]:
    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.libraries import library_stats, top_followed_artists

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        day = date.today()
        timings: dict[str, list[float]] = {"library_stats": [], "top_followed_artists": []}
        for _ in range(3):
            with engine.connect() as connection:
                started = time.perf_counter()
                library_stats(connection, day)
                timings["library_stats"].append(time.perf_counter() - started)
                started = time.perf_counter()
                top_followed_artists(connection, day)
                timings["top_followed_artists"].append(time.perf_counter() - started)
        return {name: statistics.median(runs) for name, runs in timings.items()}
    finally:
        engine.dispose()


# The three statements library_stats and top_followed_artists ran before library_summary (four
# scans of library_artists), kept here to measure them beside it on the same world.
OLD_LIBRARY_STATEMENTS = {
    "old_stats_join": (
        "SELECT count(DISTINCT la.subscriber_id), count(DISTINCT CASE WHEN "
        "s.unsubscribed_at IS NULL THEN la.subscriber_id END), count(*), "
        "count(DISTINCT la.artist_mbid) FROM library_artists la JOIN subscribers s "
        "ON s.id = la.subscriber_id WHERE la.unfollowed_on IS NULL OR la.unfollowed_on > :day"
    ),
    "old_added": (
        "SELECT count(*) FROM library_artists WHERE followed_at >= :start "
        "AND followed_at < :start + interval '1 day'"
    ),
    "old_removed": "SELECT count(*) FROM library_artists WHERE unfollowed_on = :day",
    "old_top": (
        "SELECT min(artist_name), count(*) FROM library_artists WHERE unfollowed_on IS NULL "
        "OR unfollowed_on > :day GROUP BY artist_mbid ORDER BY count(*) DESC, "
        "min(artist_name) LIMIT 10"
    ),
}


def load_library_world(engine: Engine, follows: int, day: date) -> int:
    """Fill a migrated, empty warehouse with the world of ``library_world``; its follow count."""
    from sqlalchemy import text

    from musicbutler_pipeline.warehouse.schema import library_artists

    indexes = [index for index in library_artists.indexes]
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
        connection.execute(
            text(
                "INSERT INTO subscribers (email, email_key, subscribed_at, updated_at, "
                "unsubscribed_at) SELECT 's' || i || '@example.org', "
                "'s' || i || '@example.org', now(), now(), "
                "CASE WHEN i % 50 = 0 THEN now() END FROM generate_series(1, :n) AS g(i)"
            ),
            {"n": max(1, follows // FOLLOWS_PER_SUBSCRIBER)},
        )
        connection.execute(
            text(
                "INSERT INTO library_artists (subscriber_id, artist_mbid, artist_name, "
                "source, followed_at, unfollowed_on) "
                "SELECT s.id, md5(a::text)::uuid::text, 'Artist ' || a, 'csv', "
                "CASE WHEN random() < 0.01 THEN :start ELSE :start - interval '30 days' "
                "END, CASE WHEN random() < 0.02 THEN :day - 1 END "
                "FROM subscribers s, LATERAL (SELECT DISTINCT "
                "floor(:artists * power(random() + s.id * 0, 3))::int AS a "
                "FROM generate_series(1, :per)) AS picks"
            ),
            {
                "start": datetime(day.year, day.month, day.day, tzinfo=UTC),
                "day": day,
                "artists": ARTISTS,
                "per": FOLLOWS_PER_SUBSCRIBER,
            },
        )
        for index in indexes:
            index.create(connection)
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
        rows = connection.exec_driver_sql("SELECT count(*) FROM library_artists").scalar()
    return int(rows or 0)


def library_world(follows: int, day: date) -> dict[str, Any]:
    """A throwaway PostgreSQL warehouse of ``follows`` / 60 subscribers and ``follows`` follows
    (Zipf-like artists, 2% of follows ended, 1% followed on ``day``), loaded by SQL with the
    indexes built afterwards; then the user_libraries statements timed, old and new."""
    from sqlalchemy import text

    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.libraries import library_summary
    from musicbutler_pipeline.warehouse.migrate import upgrade

    timings: dict[str, Any] = {"follows": follows}
    with warehouse(None, keep=False) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            started = time.perf_counter()
            rows = load_library_world(engine, follows, day)
            timings["rows"] = rows
            timings["load_seconds"] = time.perf_counter() - started
            log.info("world of %s follows loaded in %.1f s", rows, timings["load_seconds"])
            runs: dict[str, list[float]] = {name: [] for name in OLD_LIBRARY_STATEMENTS}
            runs["library_summary"] = []
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            for _ in range(3):
                with engine.connect() as connection:
                    for name, sql in OLD_LIBRARY_STATEMENTS.items():
                        began = time.perf_counter()
                        connection.execute(text(sql), {"day": day, "start": start}).all()
                        runs[name].append(time.perf_counter() - began)
                with engine.connect() as connection:
                    began = time.perf_counter()
                    library_summary(connection, day)
                    runs["library_summary"].append(time.perf_counter() - began)
            timings["seconds"] = {name: statistics.median(r) for name, r in runs.items()}
            timings["old_total_seconds"] = sum(
                timings["seconds"][name] for name in OLD_LIBRARY_STATEMENTS
            )
        finally:
            engine.dispose()
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--follows", type=int, default=1_000_000)
    parser.add_argument("--dialect", default="postgresql,sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--library-queries", action="store_true")
    parser.add_argument(
        "--library-world",
        type=int,
        metavar="FOLLOWS",
        help="only time the user_libraries statements, old and new, on a SQL-built world",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-files", type=Path, help="write the CSVs here and keep them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from benchmarks.scale import ADMIN_URL

    if args.library_world:
        world = library_world(args.library_world, date(2026, 11, 23))
        if args.json:
            print(json.dumps(world, indent=2, default=str))
        else:
            rows, load = world["rows"], world["load_seconds"]
            print(f"library_artists {rows:,} rows, loaded in {load:.0f} s")
            for name, seconds in world["seconds"].items():
                print(f"{name:22} {seconds:8.3f} s (median of 3)")
            print(f"{'old total':22} {world['old_total_seconds']:8.3f} s")
        return 0
    results: dict[str, Any] = {"follows": args.follows, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="musicbutler-imports-") as scratch:
        folder = args.keep_files or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        files = generate(folder, args.follows, args.seed)
        log.info("generated %s in %.1f s", files, time.perf_counter() - started)
        results["subscriber_rows"] = files["subscriber_rows"]
        results["library_rows"] = files["library_rows"]
        floors = {
            "subscribers": copy_floor(ADMIN_URL, files["subscribers_csv"]),
            "library": copy_floor(ADMIN_URL, files["library_csv"]),
        }
        results["floor_copy_seconds"] = floors
        for dialect in args.dialect.split(","):
            url_arg = None if dialect == "postgresql" else f"sqlite:///{scratch}/bench.db"
            with warehouse(url_arg, keep=False) as url:
                home = Path(scratch) / f"home-{dialect}"
                upgraded = run_command(url, home, "db", "upgrade")
                if upgraded["exit_code"] != 0:
                    raise SystemExit(f"db upgrade failed: {upgraded['summary']}")
                # A command's fixed cost (interpreter, imports, the schema check): a second
                # upgrade, which has nothing to do. Beside the import's time, not subtracted.
                measured: dict[str, Any] = {
                    "startup_seconds": run_command(url, home, "db", "upgrade")["seconds"]
                }
                for what, noun in (("subscribers", "subscribers"), ("library", "library")):
                    rows = files[f"{'subscriber' if what == 'subscribers' else 'library'}_rows"]
                    outcome = run_command(url, home, noun, "import", str(files[f"{what}_csv"]))
                    outcome["rows_per_s"] = rows / outcome["seconds"]
                    outcome["floor_rows_per_s"] = rows / floors[what]
                    outcome["ratio_to_floor"] = outcome["rows_per_s"] / outcome["floor_rows_per_s"]
                    measured[what] = outcome
                    log.info("%s %s import: %s", dialect, what, outcome)
                if args.library_queries and dialect == "postgresql":
                    measured["library_queries_seconds"] = library_queries(url)
                if dialect == "postgresql":
                    floor = insert_floor(url, files["library_csv"])
                    floor["rows_per_s"] = files["library_rows"] / floor["seconds"]
                    measured["library"]["ratio_to_insert_floor"] = (
                        measured["library"]["rows_per_s"] / floor["rows_per_s"]
                    )
                    measured["insert_floor"] = floor
                    log.info("insert floor: %s", floor)
                results[dialect] = measured
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    print(f"follows {results['library_rows']:,} rows, subscribers {results['subscriber_rows']:,}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for dialect in args.dialect.split(","):
        startup = results[dialect]["startup_seconds"]
        print(f"{dialect:10} startup: a command that does nothing takes {startup:.1f} s")
        for what in ("subscribers", "library"):
            item = results[dialect][what]
            print(
                f"{dialect:10} {what:11} {item['seconds']:8.1f} s"
                f" {item['rows_per_s']:>10,.0f} rows/s"
                f"  floor COPY {item['floor_rows_per_s']:>10,.0f} rows/s"
                f"  ratio {item['ratio_to_floor']:6.1%}  peak RSS {item['peak_rss_mib']:.0f} MiB"
                f"  exit {item['exit_code']}"
            )
        if "insert_floor" in results[dialect]:
            floor = results[dialect]["insert_floor"]
            print(
                f"{dialect:10} insert floor (COPY to a temp table + one INSERT ... SELECT into "
                f"library_artists) {floor['seconds']:.1f} s {floor['rows_per_s']:,.0f} rows/s; "
                f"library import at {results[dialect]['library']['ratio_to_insert_floor']:.1%} "
                "of it"
            )
        if "library_queries_seconds" in results[dialect]:
            for name, seconds in results[dialect]["library_queries_seconds"].items():
                print(f"{dialect:10} {name:22} {seconds:8.3f} s (median of 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

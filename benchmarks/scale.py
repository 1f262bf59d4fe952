#!/usr/bin/env python3
"""The warehouse path at target scale: bulk load, drops, digest streaming, library stats, import.

    .venv/bin/python benchmarks/scale.py [--url URL] [--subscribers 100000]
        [--follows-per-subscriber 60] [--artists 200000] [--release-groups 1000] [--seed 1]
        [--popular-releases 0.25] [--csv-rows 500000] [--batch-size 500]
        [--stale-drops-stats] [--explain] [--keep]

About 7.5 minutes on 2 cores at the defaults on PostgreSQL, most of it the 6,000,000-row load
(~2 minutes) and the CSV import (~1.5 minutes).

Without ``--url`` the script creates a throwaway PostgreSQL database
``musicbutler_bench_<random>`` on ``postgresql://postgres@127.0.0.1:5432`` and drops it at the end,
also on error or Ctrl-C (``--keep`` keeps it). ``--url sqlite:///path.db`` runs on SQLite (a file
the script creates is deleted at the end). A warehouse that already has subscribers is refused.

The synthetic population:

* ``--subscribers`` subscribers, 2% of them unsubscribed;
* each follows a uniform 50-150% of ``--follows-per-subscriber`` distinct artists (so ~60 and
  ~6,000,000 follows in total by default) from a pool of ``--artists`` artists whose popularity is
  Zipf-Mandelbrot, weight 1 / (rank + 20): the top artist ends up followed by ~27% of subscribers,
  the median artist by ~6;
* ``--release-groups`` release groups on 2026-11-23 with ~1.3 credited artists each. About 40%
  credit followed artists: a ``--popular-releases`` share of those artists are picked with the
  follows' popularity, the rest uniformly from the pool (default 0.25: ~5 drops per subscriber,
  a busy day; 1.0: ~16, a very heavy one). The rest credit artists nobody follows.

What it measures, with the project's own functions:

1. bulk load of subscribers and follows (PostgreSQL: COPY from in-memory buffers streamed in
   chunks; SQLite: executemany in chunks), rows/s;
2. ``replace_release_groups`` and ``claim_release_groups`` for the day;
3. ``replace_drops`` in a transaction (as the ``user_drops`` asset runs it), median of 3 runs, and
   the ``drop_stats`` / ``top_drops`` the asset runs after it;
4. ``iter_digests``: its first batch right after ``replace_drops`` (before the planner has
   statistics for the day's drops) and, on PostgreSQL, after the ``VACUUM ANALYZE drops``
   autovacuum would run; then the whole stream, for all subscribers and for a 10% subset (every
   tenth subscriber's drops copied to the next day), each in a fresh process: wall time, peak
   Python allocations (tracemalloc, in a second pass) and peak RSS. Equal peaks for 10% and 100%
   of the population show memory is flat in the number of subscribers;
5. ``library_stats`` and ``top_followed_artists`` (the ``user_libraries`` asset), statement by
   statement, and the size of ``library_artists``;
6. the CSV importer ``import_library`` on a 500,000-row file of new follows for a subset of
   subscribers, in a fresh process: rows/s and peak RSS.

PostgreSQL gets ``VACUUM ANALYZE`` after the load, as autovacuum would (this script does not rely
on autovacuum, which may be off). ``--explain`` logs the plans (PostgreSQL: EXPLAIN ANALYZE, in a
rolled-back transaction) of the statements measured. Progress goes to stderr; the summary, one
figure a line, to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import multiprocessing
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.engine import make_url

from musicbutler_pipeline.domain.models import CreditedArtist, ReleaseGroup
from musicbutler_pipeline.warehouse.dialect import serialized_write
from musicbutler_pipeline.warehouse.digests import iter_digests
from musicbutler_pipeline.warehouse.drops import drop_stats, replace_drops
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.health import top_drops
from musicbutler_pipeline.warehouse.imports import import_library
from musicbutler_pipeline.warehouse.libraries import library_stats, top_followed_artists
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.releases import claim_release_groups, replace_release_groups
from musicbutler_pipeline.warehouse.schema import drops, library_artists, release_group_artists

log = logging.getLogger("benchmarks.scale")

DAY = date(2026, 11, 23)
SUBSET_DAY = DAY + timedelta(days=1)  # holds a copy of every tenth subscriber's drops
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FETCHED_AT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
FOLLOWED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ZIPF_EXPONENT = 1.0
ZIPF_OFFSET = 20.0
UNSUBSCRIBED_SHARE = 0.02
FOLLOWED_RELEASE_SHARE = 0.4
CHUNK_SUBSCRIBERS = 5000  # subscribers per generated chunk (~300,000 follows by default)
COPY_READ_SIZE = 1 << 20
SQLITE_CHUNK = 50_000
DROPS_RUNS = 3
MIB = 1024 * 1024

T = TypeVar("T")


# --- Output ------------------------------------------------------------------------------------


@dataclass
class Summary:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.lines.append((label, value))
        log.info("%s: %s", label, value)

    def render(self) -> str:
        width = max((len(label) for label, _ in self.lines), default=0)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in self.lines)


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "n/a"


def rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    VmHWM, not getrusage: Linux carries ru_maxrss over exec, so a spawned child would report
    its parent's peak.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh interpreter, so its peak RSS is its own."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


# --- The warehouse: throwaway database, engine, statement timings ------------------------------


@contextlib.contextmanager
def warehouse(url: str | None, *, keep: bool) -> Iterator[str]:
    """The URL to benchmark; a throwaway database (or SQLite file) is removed afterwards."""
    if url is None:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"musicbutler_bench_{secrets.token_hex(4)}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        log.info("created database %s", name)
        try:
            yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            if keep:
                log.info("kept database %s (--keep)", name)
            else:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                log.info("dropped database %s", name)
            admin.dispose()
        return
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        yield url
        return
    if not parsed.database or parsed.database == ":memory:":
        raise SystemExit("--url: give SQLite a file (sqlite:///path.db), not :memory:")
    path = Path(parsed.database)
    created = not path.exists()
    new_folder = not path.parent.exists()
    try:
        yield url
    finally:
        if created and not keep:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if new_folder:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            log.info("deleted %s", path)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


@dataclass
class Statement:
    sql: str
    parameters: Any
    executemany: bool
    started: float
    seconds: float = 0.0


class StatementLog:
    """The statements an engine runs inside the ``with`` (bar BEGINs), each timed from its start
    to the next one's (or the end): that includes fetching the rows, which the sqlite3 driver
    does lazily, after the statement has "executed"."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[Statement] = []

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        self._close(time.perf_counter())

    def _close(self, now: float) -> None:
        if self.statements:
            self.statements[-1].seconds = now - self.statements[-1].started

    def _before(
        self,
        _connection: Connection,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        now = time.perf_counter()
        if statement.lstrip().upper().startswith("BEGIN"):
            return
        self._close(now)
        self.statements.append(Statement(statement, parameters, executemany, now))

    def slowest(self) -> Statement:
        return max(self.statements, key=lambda statement: statement.seconds)

    def total(self) -> float:
        return sum(statement.seconds for statement in self.statements)

    def breakdown(self) -> str:
        return " + ".join(f"{statement.seconds:.2f}" for statement in self.statements) + " s"


def explain(engine: Engine, log_: StatementLog, statement: Statement, title: str) -> None:
    """Log the plan of ``statement`` (actual times on PostgreSQL), changing nothing: the writes
    logged before it are replayed first, in a transaction that is rolled back."""
    if statement.executemany:
        return
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    earlier = log_.statements[: log_.statements.index(statement)]
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            for write in earlier:
                if write.sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                    connection.exec_driver_sql(write.sql, write.parameters)
            rows = connection.exec_driver_sql(prefix + statement.sql, statement.parameters).all()
        finally:
            transaction.rollback()
    plan = "\n".join(str(row[0]) if postgres else str(row[-1]) for row in rows)
    log.info("plan of %s:\n%s\n%s", title, statement.sql, plan)


# --- The synthetic population ------------------------------------------------------------------


def random_mbids(rng: np.random.Generator, count: int) -> list[str]:
    raw = rng.bytes(16 * count)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


def distinct_draws(
    rng: np.random.Generator, cdf: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) pairs: for row i, ``counts[i]`` distinct items drawn with CDF ``cdf``."""
    rows, pool = len(counts), len(cdf)
    width = int(counts.max() * 1.6) + 16
    draws = np.minimum(np.searchsorted(cdf, rng.random((rows, width)), side="right"), pool - 1)
    order = np.argsort(draws, axis=1, kind="stable")
    ordered = np.take_along_axis(draws, order, axis=1)
    repeated_ordered = np.zeros_like(ordered, dtype=bool)
    repeated_ordered[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeated = np.empty_like(repeated_ordered)
    np.put_along_axis(repeated, order, repeated_ordered, axis=1)
    first = ~repeated
    keep = first & (np.cumsum(first, axis=1) <= counts[:, None])
    row_index, column = np.nonzero(keep)
    items = draws[row_index, column]
    short = np.nonzero(keep.sum(axis=1) < counts)[0]
    if len(short):  # rare: too many repeats among the first draws; top these rows up
        extra_rows, extra_items = [row_index], [items]
        for row in short:
            have = set(items[row_index == row].tolist())
            while len(have) < counts[row]:
                candidate = int(min(np.searchsorted(cdf, rng.random(), side="right"), pool - 1))
                if candidate not in have:
                    have.add(candidate)
                    extra_rows.append(np.array([row]))
                    extra_items.append(np.array([candidate]))
        row_index, items = np.concatenate(extra_rows), np.concatenate(extra_items)
    return row_index, items


@dataclass
class Population:
    subscribers: int
    follows_per_subscriber: int
    artists: int
    seed: int
    mbids: list[str] = field(init=False)
    names: list[str] = field(init=False)
    cdf: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        weights = 1.0 / (np.arange(1, self.artists + 1) + ZIPF_OFFSET) ** ZIPF_EXPONENT
        self.cdf = np.cumsum(weights) / weights.sum()
        self.mbids = random_mbids(rng, self.artists)
        self.names = [f"Artist {rank:06d}" for rank in range(1, self.artists + 1)]

    def chunks(self) -> Iterator[range]:
        for first in range(1, self.subscribers + 1, CHUNK_SUBSCRIBERS):
            yield range(first, min(first + CHUNK_SUBSCRIBERS, self.subscribers + 1))

    def unsubscribed(self, ids: range) -> np.ndarray:
        return np.random.default_rng([self.seed, 1, ids.start]).random(len(ids)) < (
            UNSUBSCRIBED_SHARE
        )

    def follows(self, ids: range) -> tuple[np.ndarray, np.ndarray]:
        """(subscriber id, artist index) of the follows of subscribers ``ids``."""
        rng = np.random.default_rng([self.seed, 2, ids.start])
        k = self.follows_per_subscriber
        counts = rng.integers(max(1, k // 2), max(1, k + k // 2) + 1, size=len(ids))
        counts = np.minimum(counts, self.artists)
        rows, items = distinct_draws(rng, self.cdf, counts)
        return rows + ids.start, items


def release_groups_of_day(
    population: Population, count: int, seed: int, popular_share: float
) -> list[ReleaseGroup]:
    """~1.3 credited artists each; ~40% credit followed artists, a ``popular_share`` of those
    picked by popularity and the rest uniformly from the pool."""
    rng = np.random.default_rng([seed, 3])
    fresh = iter(random_mbids(rng, 4 * count))
    groups = []
    for number in range(1, count + 1):
        size = 1 + int(rng.random() < 0.25) + int(rng.random() < 0.05)
        followed = rng.random() < FOLLOWED_RELEASE_SHARE
        artists: list[CreditedArtist] = []
        used: set[str] = set()
        for position in range(size):
            join = "" if position == size - 1 else (" & ", " feat. ")[int(rng.random() < 0.5)]
            if followed and (position == 0 or rng.random() < 0.5):
                if rng.random() < popular_share:
                    index = int(np.searchsorted(population.cdf, rng.random(), side="right"))
                    index = min(index, population.artists - 1)
                else:
                    index = int(rng.integers(0, population.artists))
                mbid, name = population.mbids[index], population.names[index]
                if mbid in used:
                    continue
            else:
                mbid = next(fresh)
                name = f"Newcomer {mbid[:8]}"
            used.add(mbid)
            artists.append(CreditedArtist(mbid, name, join))
        if artists[-1].join_phrase:
            artists[-1] = CreditedArtist(artists[-1].mbid, artists[-1].name, "")
        kind = ("Album", "Single", "EP")[int(rng.integers(0, 3))]
        groups.append(
            ReleaseGroup(
                mbid=next(fresh),
                title=f"Release {number:04d}",
                primary_type=kind,
                secondary_types=("Live",) if rng.random() < 0.05 else (),
                first_release_date=DAY.isoformat(),
                release_date=DAY,
                artists=tuple(artists),
            )
        )
    return groups


# --- 1. Bulk load ------------------------------------------------------------------------------


@dataclass
class LoadTimes:
    subscribers: int = 0
    follows: int = 0
    subscribers_seconds: float = 0.0
    follows_seconds: float = 0.0
    follows_write_seconds: float = 0.0


def _copy(cursor: Any, sql: str, lines: list[str]) -> float:
    buffer = io.StringIO("".join(lines))
    started = time.perf_counter()
    cursor.copy_expert(sql, buffer, size=COPY_READ_SIZE)
    return time.perf_counter() - started


def load_postgresql(engine: Engine, population: Population) -> LoadTimes:
    times = LoadTimes()
    stamp = FOLLOWED_AT.isoformat()
    artist_fields = [
        f"{mbid}\t{name}" for mbid, name in zip(population.mbids, population.names, strict=True)
    ]
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        started = time.perf_counter()
        for ids in population.chunks():
            gone = population.unsubscribed(ids)
            lines = [
                f"{sid}\tlistener{sid}@example.org\tlistener{sid}@example.org\t"
                f"Listener {sid}\t\\N\t{stamp}\t"
                f"{stamp if unsub else chr(92) + 'N'}\t{stamp}\n"
                for sid, unsub in zip(ids, gone.tolist(), strict=True)
            ]
            _copy(
                cursor,
                "COPY subscribers (id, email, email_key, name, listenbrainz_user, subscribed_at,"
                " unsubscribed_at, updated_at) FROM STDIN",
                lines,
            )
            times.subscribers += len(lines)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('subscribers', 'id'),"
            " (SELECT max(id) FROM subscribers))"
        )
        raw.driver_connection.commit()
        times.subscribers_seconds = time.perf_counter() - started

        started = time.perf_counter()
        for ids in population.chunks():
            subscriber_ids, artist_indexes = population.follows(ids)
            lines = [
                f"{sid}\t{artist_fields[index]}\tbench\t{stamp}\t\\N\n"
                for sid, index in zip(subscriber_ids.tolist(), artist_indexes.tolist(), strict=True)
            ]
            times.follows_write_seconds += _copy(
                cursor,
                "COPY library_artists (subscriber_id, artist_mbid, artist_name, source,"
                " followed_at, unfollowed_on) FROM STDIN",
                lines,
            )
            times.follows += len(lines)
            if ids.stop // CHUNK_SUBSCRIBERS % 4 == 0:
                log.info("  %s follows copied", f"{times.follows:,}")
        raw.driver_connection.commit()
        times.follows_seconds = time.perf_counter() - started
    finally:
        raw.close()
    return times


def load_sqlite(engine: Engine, population: Population) -> LoadTimes:
    times = LoadTimes()
    # The text SQLAlchemy writes for these types on SQLite.
    stamp = FOLLOWED_AT.strftime("%Y-%m-%d %H:%M:%S.%f")
    started = time.perf_counter()
    with engine.begin() as connection:
        for ids in population.chunks():
            gone = population.unsubscribed(ids)
            rows = [
                (
                    sid,
                    f"listener{sid}@example.org",
                    f"listener{sid}@example.org",
                    f"Listener {sid}",
                    stamp,
                    stamp if unsub else None,
                    stamp,
                )
                for sid, unsub in zip(ids, gone.tolist(), strict=True)
            ]
            connection.exec_driver_sql(
                "INSERT INTO subscribers (id, email, email_key, name, subscribed_at,"
                " unsubscribed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            times.subscribers += len(rows)
    times.subscribers_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with engine.begin() as connection:
        for ids in population.chunks():
            subscriber_ids, artist_indexes = population.follows(ids)
            rows = [
                (sid, population.mbids[index], population.names[index], "bench", stamp)
                for sid, index in zip(subscriber_ids.tolist(), artist_indexes.tolist(), strict=True)
            ]
            for start in range(0, len(rows), SQLITE_CHUNK):
                chunk = rows[start : start + SQLITE_CHUNK]
                write_started = time.perf_counter()
                connection.exec_driver_sql(
                    "INSERT INTO library_artists (subscriber_id, artist_mbid, artist_name, source,"
                    " followed_at) VALUES (?, ?, ?, ?, ?)",
                    chunk,
                )
                times.follows_write_seconds += time.perf_counter() - write_started
            times.follows += len(rows)
    times.follows_seconds = time.perf_counter() - started
    return times


# --- 4. Streaming digests (runs in a fresh process) --------------------------------------------


def stream_digests(url: str, day: date, batch_size: int) -> dict[str, float]:
    """Stream every digest of ``day``: a timed pass, then a tracemalloc pass."""
    engine = make_engine(url)
    try:
        baseline = rss_mib()
        started = time.perf_counter()
        digests = groups = 0
        for digest in iter_digests(engine, day, batch_size=batch_size):
            digests += 1
            groups += len(digest.release_group_mbids)
        seconds = time.perf_counter() - started
        peak_rss = rss_mib()
        tracemalloc.start()
        traced = 0
        for _digest in iter_digests(engine, day, batch_size=batch_size):
            traced += 1
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert traced == digests
        return {
            "digests": digests,
            "release_groups": groups,
            "seconds": seconds,
            "rss_baseline_mib": baseline,
            "rss_peak_mib": peak_rss,
            "traced_peak_mib": peak / MIB,
        }
    finally:
        engine.dispose()


# --- 6. CSV import (runs in a fresh process) ---------------------------------------------------


def run_import(url: str, path: str) -> dict[str, float]:
    logging.getLogger("musicbutler_pipeline").setLevel(logging.WARNING)
    engine = make_engine(url)
    try:
        baseline = rss_mib()
        started = time.perf_counter()
        report = import_library(engine, Path(path), source="bench-csv")
        seconds = time.perf_counter() - started
        return {
            "rows": report.rows,
            "inserted": report.inserted,
            "unchanged": report.unchanged,
            "errors": len(report.errors),
            "seconds": seconds,
            "rss_baseline_mib": baseline,
            "rss_peak_mib": rss_mib(),
        }
    finally:
        engine.dispose()


def write_library_csv(path: Path, population: Population, rows: int, seed: int) -> int:
    """``rows`` follows of artists nobody follows yet, for the first subscribers."""
    per_subscriber = max(population.follows_per_subscriber, -(-rows // population.subscribers))
    subscribers = -(-rows // per_subscriber)
    rng = np.random.default_rng([seed, 4])
    pool = max(per_subscriber * 4, 50_000)
    mbids = random_mbids(rng, pool)
    weights = 1.0 / (np.arange(1, pool + 1) + ZIPF_OFFSET) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights) / weights.sum()
    row_index, items = distinct_draws(rng, cdf, np.full(subscribers, per_subscriber))
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,artist_mbid,artist_name\n")
        handle.writelines(
            f"listener{row + 1}@example.org,{mbids[item]},Imported Artist {item}\n"
            for row, item in zip(row_index[:rows].tolist(), items[:rows].tolist(), strict=True)
        )
    return subscribers


# --- The benchmark -----------------------------------------------------------------------------


def relation_sizes(connection: Connection) -> list[tuple[str, int]]:
    """(name, bytes) of library_artists and its indexes."""
    if connection.dialect.name == "postgresql":
        row = connection.exec_driver_sql(
            "SELECT pg_total_relation_size('library_artists'), pg_relation_size('library_artists'),"
            " pg_indexes_size('library_artists')"
        ).one()
        indexes = connection.exec_driver_sql(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = 'library_artists'::regclass ORDER BY 2 DESC"
        ).all()
        return [
            ("total", row[0]),
            ("heap", row[1]),
            ("indexes", row[2]),
            *((str(name), size) for name, size in indexes),
        ]
    try:
        rows = connection.exec_driver_sql(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name = 'library_artists'"
            " OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'library_artists')"
            " GROUP BY name ORDER BY 2 DESC"
        ).all()
    except Exception:  # dbstat is an optional SQLite module
        rows = []
    sizes = [(str(name), int(size)) for name, size in rows]
    return [("total", sum(size for _, size in sizes)), *sizes] if sizes else []


def first_batch(engine: Engine, batch_size: int) -> StatementLog:
    """The statements of the first batch of ``iter_digests`` for the day, timed."""
    with StatementLog(engine) as statements:
        next(iter_digests(engine, DAY, batch_size=batch_size), None)
    return statements


def vacuum_analyze(engine: Engine, table: str = "") -> float:
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {table}".strip())
    return time.perf_counter() - started


def median_run(runs: Sequence[float]) -> str:
    return f"median {statistics.median(runs):.2f} s (runs {', '.join(f'{r:.2f}' for r in runs)})"


def benchmark(url: str, args: argparse.Namespace, summary: Summary) -> None:
    engine = make_engine(url)
    backend = engine.dialect.name
    summary.add("warehouse", f"{backend} ({engine.url.render_as_string(hide_password=True)})")
    try:
        # Never migrate or fill a warehouse somebody uses.
        if inspect(engine).has_table("subscribers"):
            with engine.connect() as connection:
                if connection.exec_driver_sql("SELECT count(*) FROM subscribers").scalar_one():
                    raise SystemExit("refusing to run on a warehouse that has subscribers")
        upgrade(engine)

        # 1. Bulk load.
        log.info("generating the artist pool (%s artists)", f"{args.artists:,}")
        population = Population(
            args.subscribers, args.follows_per_subscriber, args.artists, args.seed
        )
        log.info("loading %s subscribers and their follows", f"{args.subscribers:,}")
        load = (load_postgresql if backend == "postgresql" else load_sqlite)(engine, population)
        how = "COPY" if backend == "postgresql" else "executemany"
        summary.add(
            f"load subscribers ({how})",
            f"{load.subscribers:,} rows in {load.subscribers_seconds:.1f} s"
            f" = {rate(load.subscribers, load.subscribers_seconds)}",
        )
        summary.add(
            f"load follows ({how})",
            f"{load.follows:,} rows in {load.follows_seconds:.1f} s"
            f" = {rate(load.follows, load.follows_seconds)} incl. generation;"
            f" {how} alone {load.follows_write_seconds:.1f} s"
            f" = {rate(load.follows, load.follows_write_seconds)}",
        )
        if backend == "postgresql":
            with engine.connect() as connection:
                autovacuum = connection.exec_driver_sql("SHOW autovacuum").scalar_one()
            summary.add(
                "VACUUM ANALYZE after load",
                f"{vacuum_analyze(engine):.1f} s (run where autovacuum would;"
                f" autovacuum is {autovacuum} on this server)",
            )
        with engine.connect() as connection:
            counts = (
                connection.execute(
                    select(func.count())
                    .select_from(library_artists)
                    .group_by(library_artists.c.artist_mbid)
                )
                .scalars()
                .all()
            )
        followers = np.array(sorted(counts, reverse=True))
        summary.add(
            "library shape",
            f"{load.follows / load.subscribers:.1f} follows/subscriber,"
            f" {len(followers):,} artists followed; followers per artist: top {followers[0]:,}"
            f" ({followers[0] / load.subscribers:.0%} of subscribers),"
            f" 100th {followers[min(99, len(followers) - 1)]:,},"
            f" median {np.median(followers):.0f}",
        )

        # 2. The day's release groups.
        groups = release_groups_of_day(
            population, args.release_groups, args.seed, args.popular_releases
        )
        started = time.perf_counter()
        with engine.begin() as connection:
            replace_release_groups(connection, DAY, groups, source="bench", fetched_at=FETCHED_AT)
        stored = time.perf_counter() - started
        credits = sum(len(group.artists) for group in groups)
        summary.add(
            "replace_release_groups",
            f"{len(groups):,} release groups, {credits / len(groups):.2f} credited artists each,"
            f" in {stored * 1000:.0f} ms",
        )
        started = time.perf_counter()
        with engine.begin() as connection:
            claim = claim_release_groups(
                connection, DAY, groups, source="bench", pages_source="bench", fetched_at=FETCHED_AT
            )
        summary.add(
            "claim_release_groups (re-run)",
            f"{len(claim.owned):,} owned in {(time.perf_counter() - started) * 1000:.0f} ms",
        )
        with engine.connect() as connection:
            followed_groups = connection.execute(
                select(func.count(func.distinct(release_group_artists.c.release_group_mbid))).where(
                    release_group_artists.c.artist_mbid.in_(select(library_artists.c.artist_mbid))
                )
            ).scalar_one()
        summary.add(
            "release groups by followed artists",
            f"{followed_groups:,} of {len(groups):,} ({followed_groups / len(groups):.0%})",
        )

        # 3. replace_drops, median of 3, as the user_drops asset runs it.
        runs: list[float] = []
        rows = 0
        for run in range(DROPS_RUNS):
            with StatementLog(engine) as statements:
                started = time.perf_counter()
                with serialized_write(engine, "user_drops") as connection:
                    rows = replace_drops(connection, DAY)
                runs.append(time.perf_counter() - started)
            log.info("  replace_drops run %d: %.2f s, %s rows", run + 1, runs[-1], f"{rows:,}")
        summary.add("replace_drops", f"{median_run(runs)}, {rows:,} drops rows")
        started = time.perf_counter()
        with engine.connect() as connection:
            stats = drop_stats(connection, DAY)
            after_stats = time.perf_counter()
            top_drops(connection, DAY)
        done = time.perf_counter()
        summary.add(
            "drops of the day",
            f"{stats.drops:,} drops for {stats.subscribers:,} subscribers"
            f" ({stats.drops / max(stats.subscribers, 1):.1f} each),"
            f" {stats.release_groups:,} release groups",
        )
        summary.add(
            "drop_stats / top_drops",
            f"{after_stats - started:.2f} s / {done - after_stats:.2f} s",
        )
        if args.explain:
            explain(engine, statements, statements.slowest(), "replace_drops")

        # 4. iter_digests. One batch right after replace_drops, before the planner has statistics
        # for the day's drops, then (PostgreSQL) after the VACUUM ANALYZE autovacuum would run;
        # then the full streams, for all subscribers and every tenth, in fresh processes.
        stale = first_batch(engine, args.batch_size)
        if args.explain:
            for number, statement in enumerate(stale.statements, 1):
                explain(engine, stale, statement, f"iter_digests statement {number} (stale)")
        with engine.begin() as connection:
            connection.execute(
                insert(drops).from_select(
                    [
                        "partition_date",
                        "subscriber_id",
                        "release_group_mbid",
                        "artist_mbid",
                        "artist_name",
                    ],
                    select(
                        literal(SUBSET_DAY, type_=drops.c.partition_date.type),
                        drops.c.subscriber_id,
                        drops.c.release_group_mbid,
                        drops.c.artist_mbid,
                        drops.c.artist_name,
                    ).where(drops.c.partition_date == DAY, drops.c.subscriber_id % 10 == 0),
                )
            )
        batches = -(-stats.subscribers // args.batch_size)
        first = f"{stale.total():.2f} s ({stale.breakdown()}), of ~{batches:,} batches"
        if backend == "postgresql" and args.stale_drops_stats:
            first += ", drops left unanalyzed for the streams (--stale-drops-stats)"
        elif backend == "postgresql":
            vacuum_seconds = vacuum_analyze(engine, "drops")
            fresh = first_batch(engine, args.batch_size)
            if args.explain:
                for number, statement in enumerate(fresh.statements, 1):
                    explain(engine, fresh, statement, f"iter_digests statement {number} (analyzed)")
            first += (
                f", before the day's drops are analyzed; {fresh.total():.2f} s"
                f" ({fresh.breakdown()}) after VACUUM ANALYZE drops ({vacuum_seconds:.1f} s)"
            )
        summary.add("iter_digests first batch", first)
        results = {}
        for label, day in (("all subscribers", DAY), ("10% subset", SUBSET_DAY)):
            log.info("streaming iter_digests(%s) for %s", day, label)
            result = in_child(stream_digests, url, day, args.batch_size)
            results[label] = result
            summary.add(
                f"iter_digests, {label}",
                f"{int(result['digests']):,} digests, {int(result['release_groups']):,} release"
                f" groups in {result['seconds']:.1f} s"
                f" = {result['digests'] / result['seconds']:,.0f} digests/s;"
                f" peak traced {result['traced_peak_mib']:.1f} MiB,"
                f" RSS {result['rss_baseline_mib']:.0f} -> {result['rss_peak_mib']:.0f} MiB",
            )
        full, subset = results["all subscribers"], results["10% subset"]
        summary.add(
            "iter_digests memory, 100% vs 10%",
            f"traced peak x{full['traced_peak_mib'] / subset['traced_peak_mib']:.2f},"
            f" RSS growth {full['rss_peak_mib'] - full['rss_baseline_mib']:.0f}"
            f" vs {subset['rss_peak_mib'] - subset['rss_baseline_mib']:.0f} MiB,"
            f" for x{full['digests'] / max(subset['digests'], 1):.1f} digests"
            f" (batch_size {args.batch_size})"
            + (
                "; NOT comparable: the subset fills less than one batch"
                if subset["digests"] < args.batch_size
                else ""
            ),
        )
        with engine.begin() as connection:
            connection.execute(delete(drops).where(drops.c.partition_date == SUBSET_DAY))

        # 5. library_stats, top_followed_artists, size of library_artists.
        with StatementLog(engine) as statements, engine.connect() as connection:
            started = time.perf_counter()
            library = library_stats(connection, DAY)
            stats_seconds = time.perf_counter() - started
            started = time.perf_counter()
            top_followed_artists(connection, DAY)
            top_seconds = time.perf_counter() - started
        summary.add(
            "library_stats",
            f"{stats_seconds:.2f} s ({library.follows:,} follows, {library.subscribers:,}"
            f" subscribers, {library.distinct_artists:,} artists), by statement "
            + " + ".join(f"{statement.seconds:.2f}" for statement in statements.statements[:3])
            + " s",
        )
        summary.add("top_followed_artists", f"{top_seconds:.2f} s")
        if args.explain:
            for number, statement in enumerate(statements.statements, 1):
                explain(engine, statements, statement, f"library statement {number}")
        with engine.connect() as connection:
            sizes = relation_sizes(connection)
        if sizes:
            summary.add(
                "library_artists size",
                ", ".join(f"{name} {size / MIB:,.0f} MiB" for name, size in sizes)
                + f" ({sizes[0][1] / max(load.follows, 1):.0f} B/follow)",
            )
        if backend == "sqlite":
            path = Path(make_url(url).database or "")
            summary.add("SQLite file", f"{path.stat().st_size / MIB:,.0f} MiB")

        # 6. The project's CSV importer, in a fresh process.
        with tempfile.TemporaryDirectory(prefix="musicbutler-bench-") as folder:
            csv_path = Path(folder) / "library.csv"
            csv_subscribers = write_library_csv(csv_path, population, args.csv_rows, args.seed)
            log.info(
                "import_library: %s rows for %s subscribers (%.0f MiB)",
                f"{args.csv_rows:,}",
                f"{csv_subscribers:,}",
                csv_path.stat().st_size / MIB,
            )
            result = in_child(run_import, url, str(csv_path))
        summary.add(
            "import_library (CSV)",
            f"{int(result['rows']):,} rows for {csv_subscribers:,} subscribers in"
            f" {result['seconds']:.1f} s = {rate(int(result['rows']), result['seconds'])};"
            f" {int(result['inserted']):,} inserted, {int(result['unchanged']):,} unchanged,"
            f" {int(result['errors']):,} bad; RSS {result['rss_baseline_mib']:.0f} ->"
            f" {result['rss_peak_mib']:.0f} MiB",
        )
        summary.add("benchmark process peak RSS", f"{rss_mib():.0f} MiB")
    finally:
        engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        help="warehouse URL (postgresql://... or sqlite:///path.db); default: a throwaway"
        " PostgreSQL database on 127.0.0.1:5432, dropped at the end",
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--follows-per-subscriber", type=int, default=60)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--release-groups", type=int, default=1000)
    parser.add_argument(
        "--popular-releases",
        type=float,
        default=0.25,
        help="share of the followed artists' release groups whose artists are picked by"
        " popularity, the rest uniformly from the pool (1.0: a very heavy day)",
    )
    parser.add_argument("--csv-rows", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=500, help="iter_digests batch size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stale-drops-stats",
        action="store_true",
        help="PostgreSQL: stream the digests before the day's drops are analyzed, as on a fresh"
        " warehouse (by default VACUUM ANALYZE drops runs first, as autovacuum would)",
    )
    parser.add_argument("--explain", action="store_true", help="log the slow statements' plans")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    args = parser.parse_args(argv)
    for name in ("subscribers", "follows_per_subscriber", "artists", "release_groups"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= args.popular_releases <= 1.0:
        parser.error("--popular-releases must be between 0 and 1")
    if args.subscribers < 10:
        parser.error("--subscribers must be at least 10 (the subset is every tenth)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _terminate)
    summary = Summary()
    started = time.perf_counter()
    failed = True
    try:
        with warehouse(args.url, keep=args.keep) as url:
            benchmark(url, args, summary)
        failed = False
    finally:
        summary.add("total wall time", f"{time.perf_counter() - started:.0f} s")
        if failed:
            summary.add("status", "FAILED (figures above are partial)")
        print(summary.render(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

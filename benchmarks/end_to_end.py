#!/usr/bin/env python3
"""The benchmark a user runs: the user-facing commands, timed as whole processes, beside floors.

    .venv/bin/python -m benchmarks.end_to_end --subscribers 1000 10000 [--results PATH]
    make bench                                   # 1,000 and 10,000 subscribers
    BENCH_LEVELS="1000 10000 100000" make bench  # and 100,000 (about half an hour more)

For each level N it generates a synthetic world in a temporary folder:

* ``subscribers.csv``: N subscribers (``listener000001@example.org`` ...);
* ``library.csv``: about 60 follows each (a uniform 30-90), drawn from a pool of 200,000 artists
  whose popularity is Zipf-Mandelbrot (weight 1 / (rank + 20), as ``benchmarks/scale.py``), plus
  four deliberately bad rows (an address that is not one, an id that is not a UUID, an unknown
  subscriber, an artist name over its limit) that the import must report and skip;
* ``musicbrainz/<D>/offset-NNNN.json``: recorded MusicBrainz release-group search pages for day D
  (``MUSICBUTLER_MUSICBRAINZ_URL=file://...``, as the bundled sample): 500 release groups dated D
  (10 by artists drawn by popularity, 150 by artists drawn uniformly from the pool, the rest by
  artists nobody follows; every tenth with a second credit): about 45% of subscribers are owed an
  email. Among them, 1,000 records of other days of the lookback window (half by pool artists;
  a fresh warehouse does not announce them, they are before its first day) and 50 with a partial
  date.

Then, on a fresh PostgreSQL database and a fresh ``MUSICBUTLER_HOME``, with an aiosmtpd sink on
loopback in a process of its own (it counts every envelope recipient) and ListenBrainz off, it
times as whole processes, each with its peak RSS (``wait4`` of the process):
``musicbutler db upgrade``, ``subscribers import``, ``library import``, ``run --date D`` and the
rerun of the same day, which must send nothing. Floors taken in the same run, against the same
database and sink: PostgreSQL ``COPY`` of the same CSV files into unindexed tables with the same
columns; a bare ``smtplib`` loop sending as many comparable pre-built digests over one connection;
the bare SQL join that computes the day's drops; and the start of the ``musicbutler`` process
(``--help``). It verifies that the sink received exactly one email per owed subscriber (owed:
computed from the generated world, not from the warehouse) and nothing on the rerun, then drops
the database and writes a Markdown report (``--results``) with the machine, a table per level
(each figure beside its floor and the ratio), the exponents of N between levels, and the command.
Progress goes to stderr, the report to stdout. Exit 1 if an invariant does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import secrets
import shlex
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

log = logging.getLogger("benchmarks.end_to_end")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_LEVELS = (1_000, 10_000)
ARTIST_POOL = 200_000
ZIPF_OFFSET = 20  # weight 1 / (rank + 20): the top artist is followed by about 1 in 4
FOLLOWS = (30, 90)  # follows per subscriber, uniform: about 60
RELEASES_ON_DAY = 500
# Of the day's release groups, those by an artist drawn by popularity and by one drawn uniformly
# from the pool; the rest are by artists nobody follows. About 45% of subscribers are owed an
# email, as in the run issue 15 reports (441 of 1,000).
DAY_BY_POPULAR = 10
DAY_BY_ANY = 150
NOISE_OTHER_DAYS = 1_000
NOISE_PARTIAL_DATE = 50
LOOKBACK_DAYS = 14  # the client's window: [D - 14, D]
PAGE_SIZE = 100
MAIL_FROM = "MusicButler <butler@musicbutler.example>"
SECRET_KEY = "benchmark-signing-key-0123456789"
NAMES = ("Zoë", "山田 花子", "José Müller-Ødegaard", "", "Дмитрий Волков", "Liam O'Connor")
ARTIST_WORDS = ("Sigur", "Björk", "Four", "宇多田", "Rosalía", "Tet", "Massive", "MØ", "Ocean")
ALBUM = "f529b476-6e62-324f-b0aa-1f3e33d313fc"
OFFICIAL = "4e304316-386d-3409-af2e-78857eec5cfe"
BAD_LIBRARY_ROWS = 4

# Runs one command and writes its wall time, exit code and peak RSS (wait4: that process and the
# children it waited for) to a JSON file. A small interpreter of its own, so the measured process
# does not inherit the benchmark's resident set through fork and exec.
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
child.returncode = code = os.waitstatus_to_exitcode(status)
figures = {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "returncode": code}
with open(sys.argv[1], "w") as out:
    json.dump({**figures, "maxrss_kib": usage.ru_maxrss}, out)
sys.exit(code if code >= 0 else 128 - code)
"""


class BenchmarkFailure(Exception):
    """An invariant did not hold, or a command failed unexpectedly."""


# --- The synthetic world ------------------------------------------------------------------------


def _mbid(label: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"musicbutler-bench:{label}"))


@dataclass(frozen=True)
class Artist:
    mbid: str
    name: str


class ArtistPool:
    """The followable artists, ranked by popularity; ids made on first use."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.cum_weights = list(itertools.accumulate(1 / (r + ZIPF_OFFSET) for r in range(size)))
        self._artists: dict[int, Artist] = {}

    def __getitem__(self, rank: int) -> Artist:
        artist = self._artists.get(rank)
        if artist is None:
            word = ARTIST_WORDS[rank % len(ARTIST_WORDS)]
            artist = self._artists[rank] = Artist(_mbid(f"artist:{rank}"), f"{word} {rank}")
        return artist

    def popular(self, rng: random.Random, count: int) -> list[int]:
        return rng.choices(range(self.size), cum_weights=self.cum_weights, k=count)

    def distinct_popular(self, rng: random.Random, count: int) -> list[int]:
        """``count`` distinct ranks drawn by popularity (draws with replacement, deduplicated)."""
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            for rank in self.popular(rng, 2 * (count - len(chosen))):
                chosen.setdefault(rank)
        return list(itertools.islice(chosen, count))


@dataclass
class World:
    """The files one level's commands read, and the facts the benchmark checks them against."""

    subscribers: int
    day: date
    subscribers_csv: Path
    library_csv: Path
    musicbrainz: Path
    library_rows: int  # data lines, bad ones included
    bad_library_rows: int
    release_records: int
    owed: frozenset[str]  # addresses owed an email on ``day``
    owed_drops: int  # (subscriber, release group) pairs on ``day``
    seconds: float


def _record(mbid: str, title: str, first_release_date: str, credits: Sequence[Artist]) -> dict:
    return {
        "id": mbid,
        "type-id": ALBUM,
        "score": 100,
        "primary-type-id": ALBUM,
        "count": 1,
        "title": title,
        "first-release-date": first_release_date,
        "primary-type": "Album",
        "artist-credit": [
            {
                "name": artist.name,
                "joinphrase": " & " if position < len(credits) - 1 else "",
                "artist": {"id": artist.mbid, "name": artist.name, "sort-name": artist.name},
            }
            for position, artist in enumerate(credits)
        ],
        "releases": [
            {
                "id": _mbid(f"release:{mbid}"),
                "status-id": OFFICIAL,
                "title": title,
                "status": "Official",
            }
        ],
    }


def generate_world(folder: Path, subscribers: int, day: date, seed: int) -> World:
    """Write the level's CSV files and MusicBrainz pages under ``folder``; deterministic."""
    started = time.perf_counter()
    rng = random.Random(seed)
    pool = ArtistPool(ARTIST_POOL)

    # The day's release groups and the noise around them, as MusicBrainz search records.
    day_credits: list[list[Artist]] = []
    unfollowed = (
        Artist(_mbid(f"unfollowed:{i}"), f"Nobody Follows {i}") for i in itertools.count()
    )
    for index in range(RELEASES_ON_DAY):
        if index < DAY_BY_POPULAR:
            credits = [pool[pool.popular(rng, 1)[0]]]
        elif index < DAY_BY_POPULAR + DAY_BY_ANY:
            credits = [pool[rng.randrange(pool.size)]]
        else:
            credits = [next(unfollowed)]
        if index % 10 == 9:
            credits.append(next(unfollowed))
        day_credits.append(credits)
    records = [
        _record(_mbid(f"{day}:day:{i}"), f"On the Day Vol. {i}", day.isoformat(), credits)
        for i, credits in enumerate(day_credits)
    ]
    for i in range(NOISE_OTHER_DAYS):
        other_day = day - timedelta(days=rng.randint(1, LOOKBACK_DAYS))
        artist = pool[pool.popular(rng, 1)[0]] if i % 2 else next(unfollowed)
        records.append(_record(_mbid(f"{day}:other:{i}"), f"Earlier {i}", str(other_day), [artist]))
    for i in range(NOISE_PARTIAL_DATE):
        artist = pool[pool.popular(rng, 1)[0]]
        records.append(
            _record(_mbid(f"{day}:partial:{i}"), f"Someday {i}", day.strftime("%Y-%m"), [artist])
        )
    rng.shuffle(records)
    pages = folder / "musicbrainz" / day.isoformat()
    pages.mkdir(parents=True)
    for offset in range(0, len(records), PAGE_SIZE):
        page = {
            "created": f"{day + timedelta(days=1)}T03:00:00.000Z",
            "count": len(records),
            "offset": offset,
            "release-groups": records[offset : offset + PAGE_SIZE],
        }
        (pages / f"offset-{offset:04d}.json").write_text(json.dumps(page, ensure_ascii=False))

    groups_by_artist: dict[str, set[int]] = {}
    for index, credits in enumerate(day_credits):
        for artist in credits:
            groups_by_artist.setdefault(artist.mbid, set()).add(index)
    subscribers_csv = folder / "subscribers.csv"
    library_csv = folder / "library.csv"
    owed: set[str] = set()
    owed_drops = 0
    library_rows = 0
    bad_at = {1, subscribers // 3, subscribers // 2, subscribers - 1}
    with (
        subscribers_csv.open("w", newline="", encoding="utf-8") as people,
        library_csv.open("w", newline="", encoding="utf-8") as library,
    ):
        people_out, library_out = csv.writer(people), csv.writer(library)
        people_out.writerow(("email", "name", "listenbrainz_user"))
        library_out.writerow(("email", "artist_mbid", "artist_name"))
        for number in range(1, subscribers + 1):
            email = f"listener{number:06d}@example.org"
            people_out.writerow((email, NAMES[number % len(NAMES)], ""))
            followed = [pool[rank] for rank in pool.distinct_popular(rng, rng.randint(*FOLLOWS))]
            library_out.writerows((email, artist.mbid, artist.name) for artist in followed)
            library_rows += len(followed)
            # Release groups, not artists: a release crediting two followed artists is one drop.
            day_groups: set[int] = set()
            for artist in followed:
                day_groups |= groups_by_artist.get(artist.mbid, set())
            if day_groups:
                owed.add(email)
                owed_drops += len(day_groups)
            if number in bad_at:
                library_out.writerow(_bad_library_row(len(bad_at & set(range(number))), email))
                library_rows += 1
    bad = min(len(bad_at), BAD_LIBRARY_ROWS)
    return World(
        subscribers=subscribers,
        day=day,
        subscribers_csv=subscribers_csv,
        library_csv=library_csv,
        musicbrainz=folder / "musicbrainz",
        library_rows=library_rows,
        bad_library_rows=bad,
        release_records=len(records),
        owed=frozenset(owed),
        owed_drops=owed_drops,
        seconds=time.perf_counter() - started,
    )


def _bad_library_row(kind: int, email: str) -> tuple[str, str, str]:
    """One of the four kinds of bad row the import must report by line and skip."""
    artist = Artist(_mbid("artist:bad"), "Bad Row Artist")
    return (
        ("not-an-address", artist.mbid, artist.name),
        (email, "not-a-uuid", artist.name),
        ("nobody-imported-me@example.org", artist.mbid, artist.name),
        (email, artist.mbid, "x" * 501),
    )[kind % BAD_LIBRARY_ROWS]


# --- The SMTP sink, in a process of its own -----------------------------------------------------


def serve_sink() -> None:
    """The SMTP sink process: accept every message and count each envelope recipient.

    Prints its port on the first line of stdout; then each ``take`` line on stdin is answered
    with one line of JSON, the counts since the last ``take``; ``stop`` or the end of stdin ends.
    """
    from aiosmtpd.controller import Controller

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            with lock:
                counts.update(address.lower() for address in envelope.rcpt_tos)
            return "250 OK"

    class LoopbackController(Controller):
        def _trigger_server(self) -> None:  # port 0: learn the port the kernel picked
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    controller = LoopbackController(Counting(), hostname="127.0.0.1", port=0)
    controller.start()
    try:
        print(controller.port, flush=True)  # stdout is the protocol with the benchmark
        for line in sys.stdin:
            if line.strip() == "stop":
                break
            if line.strip() == "take":
                with lock:
                    taken = dict(counts)
                    counts.clear()
                print(json.dumps(taken), flush=True)
    finally:
        controller.stop()


class SinkProcess:
    """``serve_sink`` in a process of its own (a plain subprocess: it neither shares the
    benchmark's GIL nor leaves a multiprocessing helper process behind)."""

    def __enter__(self) -> SinkProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.end_to_end import serve_sink; serve_sink()"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if not first.isdigit():
            self.__exit__()
            raise BenchmarkFailure(f"the SMTP sink did not start (it said {first!r})")
        self.port = int(first)
        return self

    def take(self) -> Counter[str]:
        """Recipients counted since the last ``take``."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("take\n")
        self._process.stdin.flush()
        return Counter(json.loads(self._process.stdout.readline()))

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self._process.stdin is not None
            self._process.stdin.write("stop\n")
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


# --- Commands and floors ------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    seconds: float
    cpu_seconds: float  # user + system: less at the mercy of the machine's load than wall time
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def measure(argv: Sequence[str], env: dict[str, str], workdir: Path) -> Measured:
    """Run ``argv`` as a whole process; its wall time, peak RSS and output."""
    with tempfile.NamedTemporaryFile("r", dir=workdir, suffix=".json") as figures:
        completed = subprocess.run(
            [sys.executable, "-c", _MEASURE, figures.name, *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            measured = json.loads(Path(figures.name).read_text() or "{}")
        except ValueError:
            measured = {}
    if "seconds" not in measured:
        raise BenchmarkFailure(f"{shlex.join(argv)}: not measured: {completed.stderr.strip()}")
    return Measured(
        seconds=measured["seconds"],
        cpu_seconds=measured["cpu"],
        peak_rss_mib=measured["maxrss_kib"] / 1024,
        returncode=measured["returncode"],
        stdout=completed.stdout,
        stderr=completed.stderr,
    )


def copy_floor(dsn: str, path: Path, columns: Sequence[str]) -> float:
    """Seconds for PostgreSQL's COPY of the CSV file ``path`` into an unindexed table."""
    table = f"copy_floor_{secrets.token_hex(4)}"
    with contextlib.closing(psycopg2.connect(dsn)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in columns)})")
        connection.commit()
        try:
            with connection.cursor() as cursor, path.open(encoding="utf-8") as source:
                started = time.perf_counter()
                cursor.copy_expert(
                    f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)", source
                )
                connection.commit()
                return time.perf_counter() - started
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {table}")
            connection.commit()


DROPS_JOIN = """
SELECT count(*), count(DISTINCT subscriber_id) FROM (
    SELECT DISTINCT library_artists.subscriber_id, release_groups.mbid
    FROM release_groups
    JOIN release_group_artists ON release_group_artists.release_group_mbid = release_groups.mbid
    JOIN library_artists ON library_artists.artist_mbid = release_group_artists.artist_mbid
    JOIN subscribers ON subscribers.id = library_artists.subscriber_id
    WHERE release_groups.partition_date = %(day)s
      AND (library_artists.unfollowed_on IS NULL OR library_artists.unfollowed_on > %(day)s)
      AND subscribers.unsubscribed_at IS NULL
) AS day_drops
"""


def join_floor(dsn: str, day: date) -> tuple[float, int, int]:
    """The fastest of three runs of the bare join that computes the day's drops, with its
    (drops, subscribers) counts."""
    timings = []
    counts = (0, 0)
    with contextlib.closing(psycopg2.connect(dsn)) as connection, connection.cursor() as cursor:
        for _ in range(3):
            started = time.perf_counter()
            cursor.execute(DROPS_JOIN, {"day": day})
            counts = cursor.fetchone() or (0, 0)
            timings.append(time.perf_counter() - started)
        connection.rollback()
    return min(timings), int(counts[0]), int(counts[1])


def smtp_floor(port: int, count: int, day: date) -> float:
    """Seconds for a bare smtplib loop to send ``count`` pre-built digests of the size the
    pipeline sends over one connection."""
    from benchmarks.smtp_throughput import digests, message_for

    if count == 0:
        return 0.0
    prebuilt = [message_for(digest).as_bytes() for digest in digests(min(count, 100))]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.local", timeout=30) as smtp:
        for number, message in zip(range(count), itertools.cycle(prebuilt), strict=False):
            smtp.sendmail("butler@musicbutler.example", [f"floor{number}@example.net"], message)
    return time.perf_counter() - started


# --- One level ----------------------------------------------------------------------------------


@dataclass
class Step:
    """A command's figures (``items`` rows imported or emails sent) beside its floor's."""

    name: str
    command: Measured
    items: int
    unit: str
    floor_name: str = ""
    floor_seconds: float | None = None
    floor_items: int = 0

    @property
    def seconds(self) -> float:
        return self.command.seconds

    @property
    def scales_with_n(self) -> bool:
        return bool(self.unit)


@dataclass
class LevelResult:
    subscribers: int
    day: date
    follows: int
    bad_rows_reported: int
    release_records: int
    owed: int
    owed_drops: int
    emails_at_sink: int
    most_to_one_recipient: int
    rerun_emails_at_sink: int
    drops_in_join: int
    generate_seconds: float
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new empty PostgreSQL database, dropped afterwards (also on error or Ctrl-C)."""
    admin = make_url(admin_url)
    name = f"musicbutler_bench_{secrets.token_hex(4)}"
    admin_dsn = admin.render_as_string(hide_password=False)

    def run(sql: str) -> None:
        with contextlib.closing(psycopg2.connect(admin_dsn)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)

    run(f'CREATE DATABASE "{name}"')
    log.info("created database %s", name)
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log.info("dropped database %s", name)


def command_env(home: Path, warehouse_url: str, mail_url: str, musicbrainz: Path) -> dict[str, str]:
    """The environment of every command: this one without MusicButler or Dagster settings of
    its own, then the level's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MUSICBUTLER_", "DAGSTER_"))
    }
    env.update(
        MUSICBUTLER_HOME=str(home),
        MUSICBUTLER_WAREHOUSE_URL=warehouse_url,
        MUSICBUTLER_MAIL_URL=mail_url,
        MUSICBUTLER_MAIL_FROM=MAIL_FROM,
        MUSICBUTLER_MUSICBRAINZ_URL=musicbrainz.as_uri(),
        MUSICBUTLER_LISTENBRAINZ_URL="off",
        MUSICBUTLER_SECRET_KEY=SECRET_KEY,
    )
    return env


def _musicbutler() -> str:
    beside = Path(sys.executable).with_name("musicbutler")
    return str(beside) if beside.exists() else "musicbutler"


def _checked(what: str, measured: Measured, *, expect: int = 0) -> Measured:
    if measured.returncode != expect:
        detail = (measured.stderr.strip() or measured.stdout.strip()).splitlines()[-5:]
        raise BenchmarkFailure(
            f"{what}: exit {measured.returncode}, expected {expect}: {' | '.join(detail)}"
        )
    return measured


def run_level(
    subscribers: int,
    *,
    day: date,
    admin_url: str,
    workdir: Path,
    seed: int = 1,
    max_send_age_days: int = 2,
    database_url: str | None = None,
    process_start: bool = True,
) -> LevelResult:
    """Generate the level's world, run the commands on a fresh database, take the floors and
    check the invariants; BenchmarkFailure when one does not hold.

    ``database_url``: an empty database to use instead of creating (and dropping) one on the
    server of ``admin_url``. ``process_start``: also time ``musicbutler --help``.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"level-{subscribers}-", dir=workdir))
    log.info("N=%s: generating the world in %s", f"{subscribers:,}", folder)
    world = generate_world(folder, subscribers, day, seed)
    log.info(
        "N=%s: %s follows (%d bad rows), %s release records, %s owed an email (%.1f s)",
        f"{subscribers:,}",
        f"{world.library_rows:,}",
        world.bad_library_rows,
        f"{world.release_records:,}",
        f"{len(world.owed):,}",
        world.seconds,
    )
    mb = _musicbutler()
    old_day = (datetime.now(UTC).date() - day).days > max_send_age_days
    run_argv = [mb, "run", "--date", day.isoformat(), *(["--allow-old"] if old_day else [])]
    database = contextlib.nullcontext(database_url) if database_url else fresh_database(admin_url)
    with database as url, SinkProcess() as sink:
        env = command_env(folder / "home", url, f"smtp://127.0.0.1:{sink.port}", world.musicbrainz)

        def timed(what: str, argv: list[str], *, expect: int = 0) -> Measured:
            log.info("N=%s: %s", f"{subscribers:,}", shlex.join(argv[1:]))
            measured = _checked(what, measure(argv, env, folder), expect=expect)
            log.info(
                "  %.2f s (CPU %.2f s), peak RSS %.0f MiB",
                measured.seconds,
                measured.cpu_seconds,
                measured.peak_rss_mib,
            )
            return measured

        start = timed("musicbutler --help", [mb, "--help"]) if process_start else None
        upgrade = timed("db upgrade", [mb, "db", "upgrade"])
        people = timed(
            "subscribers import", [mb, "subscribers", "import", str(world.subscribers_csv)]
        )
        library = timed(
            "library import", [mb, "library", "import", str(world.library_csv)], expect=1
        )
        bad = re.search(r"(\d+) bad", library.stdout)
        bad_rows = int(bad.group(1)) if bad else -1
        if bad_rows != world.bad_library_rows:
            raise BenchmarkFailure(
                f"library import: reported {bad_rows} bad rows, the file has "
                f"{world.bad_library_rows}: {library.stdout.strip()}"
            )
        sink.take()
        run = timed(f"run --date {day}", run_argv)
        received = sink.take()
        rerun = timed(f"rerun --date {day}", run_argv)
        received_again = sink.take()

        dsn = make_url(url).render_as_string(hide_password=False)
        copy_people = copy_floor(dsn, world.subscribers_csv, ("email", "name", "listenbrainz_user"))
        copy_library = copy_floor(dsn, world.library_csv, ("email", "artist_mbid", "artist_name"))
        join_seconds, join_drops, join_subscribers = join_floor(dsn, day)
        smtp_seconds = smtp_floor(sink.port, len(world.owed), day)
        floor_received = sink.take()

    result = LevelResult(
        subscribers=subscribers,
        day=day,
        follows=world.library_rows - world.bad_library_rows,
        bad_rows_reported=bad_rows,
        release_records=world.release_records,
        owed=len(world.owed),
        owed_drops=world.owed_drops,
        emails_at_sink=sum(received.values()),
        most_to_one_recipient=max(received.values(), default=0),
        rerun_emails_at_sink=sum(received_again.values()),
        drops_in_join=join_drops,
        generate_seconds=world.seconds,
    )
    emails = len(world.owed)
    result.steps = [
        Step(
            "subscribers import",
            people,
            subscribers,
            "rows",
            "COPY of the same CSV",
            copy_people,
            subscribers,
        ),
        Step(
            "library import",
            library,
            world.library_rows,
            "rows",
            "COPY of the same CSV",
            copy_library,
            world.library_rows,
        ),
        Step(
            "run",
            run,
            result.emails_at_sink,
            "emails",
            "bare smtplib, one connection",
            smtp_seconds,
            emails,
        ),
        Step(
            "rerun (sends nothing)",
            rerun,
            result.rerun_emails_at_sink,
            "emails",
            "the day's drops join (SQL)",
            join_seconds,
            join_drops,
        ),
        Step("db upgrade", upgrade, 0, ""),
    ]
    if start is not None:
        result.steps.append(Step("process start (--help)", start, 0, ""))
    problems = []
    if set(received) != world.owed:
        missing, extra = len(world.owed - set(received)), len(set(received) - world.owed)
        problems.append(f"{missing} owed subscribers got no email, {extra} unowed got one")
    if result.most_to_one_recipient > 1:
        twice = sum(1 for count in received.values() if count > 1)
        problems.append(f"{twice} subscribers got more than one email")
    if result.rerun_emails_at_sink:
        problems.append(f"the rerun sent {result.rerun_emails_at_sink} emails")
    if (join_drops, join_subscribers) != (world.owed_drops, emails):
        problems.append(
            f"the warehouse's join finds {join_drops} drops for {join_subscribers} subscribers, "
            f"the world has {world.owed_drops} for {emails}"
        )
    if sum(floor_received.values()) != emails:
        problems.append(f"the smtplib floor delivered {sum(floor_received.values())} of {emails}")
    if problems:
        raise BenchmarkFailure(f"N={subscribers:,}: " + "; ".join(problems))
    log.info("N=%s: invariants hold", f"{subscribers:,}")
    return result


# --- The report ---------------------------------------------------------------------------------


def machine(admin_url: str) -> list[tuple[str, str]]:
    def first(path: str, prefix: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        return "unknown"

    memory = first("/proc/meminfo", "MemTotal")
    if memory.endswith(" kB"):
        memory = f"{int(memory.split()[0]) / 2**20:.1f} GiB"
    with (
        contextlib.closing(
            psycopg2.connect(make_url(admin_url).render_as_string(hide_password=False))
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
        postgres = str(row[0]) if row else "unknown"
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [
        ("CPU", f"{first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores"),
        ("RAM", memory),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("PostgreSQL", postgres),
        ("Python", platform.python_version()),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("commit", git.stdout.strip() or "unknown"),
        ("load average (1, 5, 15 min) at start", ", ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def _rate(items: int, seconds: float | None) -> str:
    if seconds is None or seconds <= 0 or items == 0:
        return ""
    return f"{items / seconds:,.0f}/s"


def _seconds(seconds: float | None) -> str:
    return "" if seconds is None else (f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s")


def _ratio(step: Step) -> str:
    if step.floor_seconds is None or step.floor_seconds <= 0 or step.seconds <= 0:
        return ""
    if step.items and step.floor_items:
        ratio = (step.items / step.seconds) / (step.floor_items / step.floor_seconds)
        return f"{ratio:.1%} of the floor's rate"
    return f"{step.seconds / step.floor_seconds:,.0f}x the floor's time"


def level_table(result: LevelResult) -> list[str]:
    lines = [
        f"### {result.subscribers:,} subscribers",
        "",
        f"{result.follows:,} follows (+{result.bad_rows_reported} bad rows, reported and "
        f"skipped), {result.release_records:,} release records of which {RELEASES_ON_DAY} dated "
        f"{result.day}; owed: {result.owed:,} subscribers, {result.owed_drops:,} drops. "
        f"At the sink: {result.emails_at_sink:,} emails, at most {result.most_to_one_recipient} "
        f"to one recipient; the rerun: {result.rerun_emails_at_sink}.",
        "",
        "| command | time | CPU | rate | peak RSS | floor | floor time | floor rate | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for step in result.steps:
        items = f" ({step.items:,} {step.unit})" if step.unit else ""
        floor_items = f" ({step.floor_items:,})" if step.floor_name and step.floor_items else ""
        lines.append(
            f"| {step.name}{items} | {_seconds(step.seconds)} "
            f"| {_seconds(step.command.cpu_seconds)} | {_rate(step.items, step.seconds)} "
            f"| {step.command.peak_rss_mib:.0f} MiB | {step.floor_name}{floor_items} "
            f"| {_seconds(step.floor_seconds)} | {_rate(step.floor_items, step.floor_seconds)} "
            f"| {_ratio(step)} |"
        )
    return [*lines, ""]


def growth_table(results: Sequence[LevelResult]) -> list[str]:
    """The exponent k in time ~ N^k between consecutive levels, for each command and floor."""
    if len(results) < 2:
        return []
    pairs = list(itertools.pairwise(results))
    header = " | ".join(f"{a.subscribers:,} → {b.subscribers:,}" for a, b in pairs)
    lines = [
        "### Cost growth: the exponent of N between levels (1.0 is linear)",
        "",
        f"| figure | {header} |",
        "| --- |" + " --- |" * len(pairs),
    ]
    for name in [step.name for step in results[0].steps if step.scales_with_n]:
        cells, cpu_cells, floor_cells = [], [], []
        for a, b in pairs:
            sa, sb = a.step(name), b.step(name)
            scale = math.log(b.subscribers / a.subscribers)
            cells.append(f"{math.log(sb.seconds / sa.seconds) / scale:.2f}")
            cpu = sb.command.cpu_seconds / sa.command.cpu_seconds
            cpu_cells.append(f"{math.log(cpu) / scale:.2f}")
            if sa.floor_seconds and sb.floor_seconds:
                floor_cells.append(f"{math.log(sb.floor_seconds / sa.floor_seconds) / scale:.2f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append(f"| {name}, CPU time | {' | '.join(cpu_cells)} |")
        if len(floor_cells) == len(pairs):
            floor_name = results[0].step(name).floor_name
            lines.append(f"| floor: {floor_name} | {' | '.join(floor_cells)} |")
    return [*lines, ""]


def render_results(
    machine_rows: Sequence[tuple[str, str]], results: Sequence[LevelResult], command: str
) -> str:
    lines = [
        "# End-to-end benchmark: the user-facing commands beside their floors",
        "",
        "Written by `benchmarks/end_to_end.py` (`make bench`); see its docstring for the world it",
        "generates and what each floor is. Every command is a whole process (`musicbutler ...`) on",
        "a fresh PostgreSQL database, sending to an aiosmtpd sink on loopback in its own process;",
        "the floors are measured in the same run against the same database and sink. Timings on a",
        "shared machine vary with its load (below): compare ratios, not seconds.",
        "",
        "Command:",
        "",
        "```sh",
        command,
        "```",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in machine_rows),
        "",
    ]
    for result in results:
        lines.extend(level_table(result))
    lines.extend(growth_table(results))
    lines.append(
        "Time is wall-clock; CPU is the command's own user + system time (not PostgreSQL's, "
        "nor the sink's), which a loaded machine inflates less. Peak RSS is that of each "
        "command's process (`wait4`); the invariants checked at every "
        "level: one email per owed subscriber at the sink, nobody twice, the rerun sends nothing, "
        "the warehouse's join finds the drops the generated world implies."
    )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.end_to_end", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=list(DEFAULT_LEVELS),
        metavar="N",
        help="levels to run (default: %(default)s)",
    )
    parser.add_argument("--results", type=Path, help="write the Markdown report here as well")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MUSICBUTLER_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="admin URL of the PostgreSQL server; each level gets a database of its own there, "
        "dropped afterwards (default: $MUSICBUTLER_TEST_POSTGRES_URL, else %(default)s)",
    )
    parser.add_argument(
        "--date",
        type=date.fromisoformat,
        default=datetime.now(UTC).date() - timedelta(days=1),
        help="the day D to send (default: yesterday, UTC)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the world (default: 1)")
    args = parser.parse_args(argv)
    if any(n < 10 for n in args.subscribers):
        parser.error("--subscribers: each level must be at least 10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    command = shlex.join(
        ["python", "-m", "benchmarks.end_to_end", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        machine_rows = machine(args.postgres_url)
    except psycopg2.OperationalError as exc:
        shown = make_url(args.postgres_url).render_as_string(hide_password=True)
        first_line = str(exc).strip().splitlines()[0]
        log.error("--postgres-url: no PostgreSQL server answers at %s: %s", shown, first_line)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="musicbutler-bench-") as workdir:
        try:
            for subscribers in args.subscribers:
                results.append(
                    run_level(
                        subscribers,
                        day=args.date,
                        admin_url=args.postgres_url,
                        workdir=Path(workdir),
                        seed=args.seed,
                    )
                )
        except BenchmarkFailure as exc:
            log.error("benchmark failed: %s", exc)
            return 1
    machine_rows.append(
        ("load average (1, 5, 15 min) at the end", ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    )
    report = render_results(machine_rows, results, command)
    if args.results:
        args.results.write_text(report, encoding="utf-8")
        log.info("wrote %s", args.results)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Delivery speed of ``musicbutler run --date D`` against a bare smtplib loop, and the rerun.

    .venv/bin/python -m benchmarks.delivery [--subscribers 1000] [--connections 1,4]
        [--relay-delay 0] [--release-groups 500] [--follows-per-subscriber 60] [--seed 1]
        [--url URL] [--json] [--keep]

The world: ``--subscribers`` subscribers with ~60 Zipf-distributed follows each, bulk-loaded as
``benchmarks/scale.py`` does, and ``--release-groups`` release groups on the day recorded as
MusicBrainz search pages (``MUSICBUTLER_MUSICBRAINZ_URL=file://...``), so the run fetches,
computes drops and sends as it does for a user. Without ``--url`` a throwaway PostgreSQL database
is created and dropped at the end.

An aiosmtpd sink runs in its own process (it does not share the GIL with the timed command),
accepts every message and records when each arrived, on which connection, and for whom. With
``--relay-delay S`` it waits S seconds before answering each DATA, like a relay that filters or
relays before it replies (that is where parallel connections pay off).

Measured, in this order, in the same run:

1. ``musicbutler run --date D`` as a whole subprocess, for each ``--connections`` N (the mail URL
   gets ``?connections=N``; the day's ledger rows are deleted between levels): wall time, emails,
   emails/s over the whole process and over the delivery itself (first to last arrival at the
   sink), connections the sink saw, anybody received twice;
2. the floor: a bare ``smtplib`` loop over one connection sending the same number of the
   messages the run delivered (their bytes, as received) to the same sink;
3. the rerun of the day that was just sent, as a whole subprocess (it must send nothing).

Progress goes to stderr; a summary to stdout, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from benchmarks.scale import (
    DAY,
    Population,
    load_postgresql,
    load_sqlite,
    release_groups_of_day,
    warehouse,
)
from musicbutler_pipeline.domain.models import ReleaseGroup
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.schema import announcements, sends

log = logging.getLogger("benchmarks.delivery")

MAIL_FROM = "MusicButler <butler@musicbutler.example>"
PAGE_SIZE = 100
FLOOR_SAMPLE = 200  # distinct received messages the floor loop sends round-robin


# --- The sink (its own process) ----------------------------------------------------------------


def _sink(pipe: Connection, delay: float) -> None:
    """Accept everything; on request report (arrival times, connections, recipients) and the
    raw bytes of a sample of the messages."""
    import asyncio
    import threading

    from aiosmtpd.controller import Controller

    lock = threading.Lock()
    arrivals: list[float] = []
    recipients: list[str] = []
    peers: set[tuple[str, int]] = set()
    samples: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            if delay:
                await asyncio.sleep(delay)
            with lock:
                arrivals.append(time.time())
                recipients.extend(envelope.rcpt_tos)
                peers.add(tuple(session.peer[:2]))
                if len(samples) < FLOOR_SAMPLE:
                    samples.append(envelope.original_content or b"")
            return "250 OK"

    class LoopbackController(Controller):
        def _trigger_server(self) -> None:
            server: Any = self.server
            self.port = server.sockets[0].getsockname()[1]
            super()._trigger_server()

    controller = LoopbackController(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    pipe.send(controller.port)
    while True:
        request = pipe.recv()
        with lock:
            if request == "stop":
                break
            if request == "samples":
                pipe.send(list(samples))
            elif request == "report":
                pipe.send((list(arrivals), list(recipients), len(peers)))
            elif request == "reset":
                arrivals.clear()
                recipients.clear()
                peers.clear()
                pipe.send(True)
    controller.stop()


class SinkProcess:
    def __init__(self, delay: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_sink, args=(child, delay), daemon=True)

    def __enter__(self) -> SinkProcess:
        self._process.start()
        self.port: int = self._pipe.recv()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def ask(self, request: str) -> Any:
        self._pipe.send(request)
        return self._pipe.recv()


# --- The world ---------------------------------------------------------------------------------


def search_page_record(group: ReleaseGroup) -> dict[str, Any]:
    """A release group as the MusicBrainz search API answers it."""
    credits = [
        {
            "name": artist.name,
            "joinphrase": artist.join_phrase,
            "artist": {"id": artist.mbid, "name": artist.name, "sort-name": artist.name},
        }
        for artist in group.artists
    ]
    return {
        "id": group.mbid,
        "score": 100,
        "title": group.title,
        "first-release-date": group.first_release_date,
        "primary-type": group.primary_type,
        "secondary-types": list(group.secondary_types),
        "artist-credit": credits,
        "releases": [{"id": group.mbid, "title": group.title, "status": "Official"}],
    }


def write_snapshot(root: Path, groups: list[ReleaseGroup]) -> None:
    folder = root / DAY.isoformat()
    folder.mkdir(parents=True)
    for offset in range(0, max(len(groups), 1), PAGE_SIZE):
        page = {
            "created": "2026-11-24T03:00:00.000Z",
            "count": len(groups),
            "offset": offset,
            "release-groups": [search_page_record(g) for g in groups[offset : offset + PAGE_SIZE]],
        }
        (folder / f"offset-{offset:04d}.json").write_text(json.dumps(page))


# --- Timed commands ----------------------------------------------------------------------------


def run_day(
    env: dict[str, str], code: Path | None = None, profile: Path | None = None
) -> tuple[float, float]:
    """``musicbutler run`` of the day, timed as a whole process (``code``: another checkout's
    package, to compare before and after a change; ``profile``: sampled by py-spy into this file,
    collapsed stacks, which slows it down)."""
    if code is not None:
        env = {**env, "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "musicbutler_pipeline.cli", "run", "--date", DAY.isoformat()]
    if profile is not None and profile.suffix == ".pstats":
        command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    elif profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        command = [
            str(spy),
            "record",
            "--idle",
            # Dagster's multiprocess executor runs the send step in a child process.
            "--subprocesses",
            "--format",
            "raw",
            "-o",
            str(profile),
            "--",
            *command,
        ]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        command,
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"musicbutler run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children: less sensitive to the
    machine's load than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_smtplib(port: int, messages: list[bytes], count: int) -> tuple[float, float]:
    """``count`` messages over one connection with nothing but smtplib: the floor (wall and CPU
    seconds)."""
    cpu = time.process_time()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for number in range(count):
            connection.sendmail(
                "butler@musicbutler.example",
                [f"floor{number}@example.org"],
                messages[number % len(messages)],
            )
    return time.perf_counter() - started, time.process_time() - cpu


def commit_floor(url: str, count: int = 500) -> float:
    """Single-row UPDATE commits per second on the warehouse, now: the ledger makes three an email
    (claim, the phase mark, the sent mark), so a third of this bounds the run on a loaded disk."""
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE bench_commits (id int PRIMARY KEY, n int)")
            connection.exec_driver_sql("INSERT INTO bench_commits VALUES (1, 0)")
            started = time.perf_counter()
            for _ in range(count):
                connection.exec_driver_sql("UPDATE bench_commits SET n = n + 1 WHERE id = 1")
            seconds = time.perf_counter() - started
            connection.exec_driver_sql("DROP TABLE bench_commits")
    finally:
        engine.dispose()
    return count / seconds


def benchmark(url: str, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    population = Population(
        args.subscribers,
        args.follows_per_subscriber,
        args.artists or 20 * args.subscribers,
        args.seed,
    )
    log.info("loading %d subscribers", args.subscribers)
    if engine.dialect.name == "postgresql":
        load_postgresql(engine, population)
    else:
        load_sqlite(engine, population)
    groups = release_groups_of_day(population, args.release_groups, args.seed, args.popular)
    write_snapshot(home / "musicbrainz", groups)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    env.update(
        MUSICBUTLER_HOME=str(home / "home"),
        MUSICBUTLER_WAREHOUSE_URL=url,
        MUSICBUTLER_MAIL_FROM=MAIL_FROM,
        MUSICBUTLER_MUSICBRAINZ_URL=(home / "musicbrainz").as_uri(),
        MUSICBUTLER_SECRET_KEY="benchmark-secret-key-0123456789",
        MUSICBUTLER_MAX_SEND_AGE_DAYS="3650",
        PYTHONUNBUFFERED="1",
    )
    result: dict[str, Any] = {
        "subscribers": args.subscribers,
        "database": engine.dialect.name,
        "relay_delay_s": args.relay_delay,
        "runs": [],
    }
    with SinkProcess(args.relay_delay) as sink:
        mail_url = f"smtp://127.0.0.1:{sink.port}"
        # ``--compare DIR`` runs that checkout's package at each level too, first, so that a
        # before/after pair shares the machine's load of the moment.
        levels = [
            (connections, code)
            for connections in args.connections
            for code in ([args.compare] if args.compare else []) + [args.code]
        ]
        for level, (connections, code) in enumerate(levels):
            if level:
                with engine.begin() as connection:  # the next level sends the day afresh
                    connection.execute(delete(announcements))
                    connection.execute(delete(sends))
            sink.ask("reset")
            if connections > 1 and code is not None and code == args.compare:
                continue  # the other checkout may not know ?connections=
            env["MUSICBUTLER_MAIL_URL"] = (
                mail_url if connections == 1 else f"{mail_url}?connections={connections}"
            )
            log.info("musicbutler run, connections=%d, code %s", connections, code or "this")
            seconds, cpu = run_day(env, code, args.profile if not level else None)
            arrivals, recipients, peers = sink.ask("report")
            emails = len(recipients)
            span = (max(arrivals) - min(arrivals)) if len(arrivals) > 1 else 0.0
            result["runs"].append(
                {
                    "connections": connections,
                    "code": str(code or "this checkout"),
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(cpu, 2),
                    "emails": emails,
                    "emails_per_s": round(emails / seconds, 1),
                    "delivery_seconds": round(span, 2),
                    "delivery_emails_per_s": round(emails / span, 1) if span else None,
                    "sink_connections": peers,
                    "duplicates": emails - len(set(recipients)),
                }
            )
            log.info("%s", result["runs"][-1])
        emails = result["runs"][-1]["emails"]
        samples = sink.ask("samples")
        floor_seconds, floor_cpu = bare_smtplib(sink.port, samples, emails)
        result["floor"] = {
            "emails": emails,
            "seconds": round(floor_seconds, 2),
            "cpu_seconds": round(floor_cpu, 2),
            "emails_per_s": round(emails / floor_seconds, 1),
        }
        if engine.dialect.name == "postgresql":
            result["floor"]["commits_per_s"] = round(commit_floor(url), 1)
        for run in result["runs"]:
            floor_rate = result["floor"]["emails_per_s"]
            run["ratio_whole_run"] = round(run["emails_per_s"] / floor_rate, 3)
            if run["delivery_emails_per_s"]:
                run["ratio_delivery"] = round(run["delivery_emails_per_s"] / floor_rate, 3)
        sink.ask("reset")
        log.info("rerun of the sent day")
        env["MUSICBUTLER_MAIL_URL"] = mail_url
        rerun_seconds, rerun_cpu = run_day(env, args.code)
        _arrivals, rerun_recipients, _peers = sink.ask("report")
        result["rerun"] = {
            "seconds": round(rerun_seconds, 2),
            "cpu_seconds": round(rerun_cpu, 2),
            "emails": len(rerun_recipients),
        }
    engine.dispose()
    return result


def render(result: dict[str, Any]) -> str:
    floor = result["floor"]
    lines = [
        f"{result['subscribers']:,} subscribers on {result['database']}, "
        f"relay delay {result['relay_delay_s']} s",
        f"floor: bare smtplib, one connection: {floor['emails_per_s']:,} emails/s "
        f"({floor['emails']} in {floor['seconds']} s, {floor['cpu_seconds']} s CPU)",
        f"floor: single-row commits on the warehouse: {floor.get('commits_per_s')}/s"
        " (the ledger makes three an email)",
    ]
    for run in result["runs"]:
        lines.append(
            f"run ({run['code']}), connections={run['connections']}:"
            f" {run['emails']} emails in {run['seconds']} s"
            f" ({run['cpu_seconds']} s CPU)"
            f" = {run['emails_per_s']} emails/s whole process ({run['ratio_whole_run']:.0%} of the"
            f" floor); delivery {run['delivery_seconds']} s = {run['delivery_emails_per_s']}"
            f" emails/s ({run.get('ratio_delivery', 0):.0%}); sink saw"
            f" {run['sink_connections']} connection(s), {run['duplicates']} duplicates"
        )
    rerun = result["rerun"]
    lines.append(
        f"rerun of the sent day: {rerun['seconds']} s ({rerun['cpu_seconds']} s CPU),"
        f" {rerun['emails']} emails"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="warehouse URL (default: a throwaway PostgreSQL database)")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--follows-per-subscriber", type=int, default=60)
    parser.add_argument("--artists", type=int, default=0, help="default: 20 per subscriber")
    parser.add_argument("--release-groups", type=int, default=500)
    parser.add_argument("--popular", type=float, default=0.25, help="see benchmarks/scale.py")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1],
        help="comma-separated levels of ?connections=N, e.g. 1,4",
    )
    parser.add_argument("--relay-delay", type=float, default=0.0, help="seconds per DATA reply")
    parser.add_argument(
        "--code", type=Path, help="run the musicbutler package of another checkout (before/after)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the first run: cProfile into a .pstats file, else py-spy collapsed stacks",
    )
    parser.add_argument(
        "--compare", type=Path, help="also run another checkout's package at each level, first"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    with warehouse(args.url, keep=args.keep) as url, tempfile.TemporaryDirectory() as folder:
        result = benchmark(url, args, Path(folder))
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

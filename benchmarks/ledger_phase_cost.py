#!/usr/bin/env python3
"""What recording the phase costs per email: the ledger's one extra UPDATE before the body.

    .venv/bin/python -m benchmarks.ledger_phase_cost [--count 500] [--rounds 3]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Sends ``count`` small messages to a loopback aiosmtpd sink (its own process) the way
``services.notifier.send_digests`` does: claim the ledger row, send through ``SmtpMailer``, mark
it sent.
``without phase`` passes no ``before_body`` hook (the ledger writes of the old code: claim and
mark sent); ``with phase`` adds ``SendLedger.mark_phase(claim, SendPhase.BODY)`` just before the
body (what the pipeline does now). Variants alternate within each round, so load on a shared machine
hits both alike; the table gives the median round. SQLite always; PostgreSQL with ``--postgres``
(a scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from email.message import EmailMessage
from functools import partial
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from benchmarks.smtp_throughput import _sink
from musicbutler_pipeline.domain.sends import Sender, SendPhase
from musicbutler_pipeline.mail.backends.smtp import SmtpMailer
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.schema import subscribers

DAY = date(2026, 11, 23)


def _message(number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "butler@example.org"
    message["To"] = f"reader{number}@example.org"
    message["Subject"] = "New Music for November 23, 2026"
    message["Message-ID"] = f"<bench-{number}@example.org>"
    message.set_content("x" * 20_000)
    return message


def _round(url: str, port: int, count: int, with_phase: bool) -> float:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM announcements"))
        connection.execute(text("DELETE FROM sends"))
        connection.execute(text("DELETE FROM subscribers"))
        ids = [
            connection.execute(
                insert(subscribers)
                .values(
                    email=f"reader{n}@example.org",
                    subscribed_at=text("CURRENT_TIMESTAMP"),
                    updated_at=text("CURRENT_TIMESTAMP"),
                )
                .returning(subscribers.c.id)
            ).scalar_one()
            for n in range(count)
        ]
    ledger = SendLedger(engine, Sender("bench", "host", 1, "v"))
    messages = [_message(n) for n in range(count)]
    start = time.perf_counter()
    with SmtpMailer("127.0.0.1", port, local_hostname="bench.local") as mailer:
        for subscriber, message in zip(ids, messages, strict=True):
            claim = ledger.claim(
                DAY,
                subscriber,
                recipient=str(message["To"]),
                message_id="<m>",
                release_group_count=0,
            )
            hook = partial(ledger.mark_phase, claim, SendPhase.BODY) if with_phase else None
            mailer.send(message, before_body=hook)
            ledger.mark_sent(claim, DAY, subscriber, [])
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="server URL; a scratch database is made there")
    args = parser.parse_args(argv)

    processes = multiprocessing.get_context("spawn")
    parent, child = processes.Pipe()
    sink = processes.Process(target=_sink, args=(child, None), daemon=True)
    sink.start()
    port = parent.recv()

    targets: list[tuple[str, str]] = []
    scratch = tempfile.TemporaryDirectory()
    targets.append(("SQLite", f"sqlite:///{Path(scratch.name) / 'bench.db'}"))
    admin = None
    database = f"bench_phase_{uuid.uuid4().hex[:8]}"
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        targets.append(("PostgreSQL", args.postgres.rsplit("/", 1)[0] + f"/{database}"))
    print(
        f"ledger + SMTP per email, {args.count} emails x {args.rounds} rounds, median round",
        file=sys.stderr,
    )
    print(f"{'warehouse':<12} {'without phase':>14} {'with phase':>12} {'extra per email':>16}")
    try:
        for name, url in targets:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):
                for with_phase in (False, True):
                    times[with_phase].append(_round(url, port, args.count, with_phase))
            before, after = (statistics.median(times[flag]) for flag in (False, True))
            print(
                f"{name:<12} {args.count / before:>9.0f} /s {args.count / after:>7.0f} /s "
                f"{(after - before) / args.count * 1000:>12.2f} ms"
            )
    finally:
        parent.send("stop")
        sink.join(timeout=10)
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
            admin.dispose()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

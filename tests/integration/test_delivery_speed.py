"""``?connections=N`` against a real SMTP server, and a rerun that skips settled subscribers in SQL.

Parallel connections: the server sees N of them in use at once, nobody gets two emails, and the
one ``?rate=`` holds across all of them. A rerun of a sent day reads no digest at all (the skip
happens in the digest query), while the ledger's claim still refuses a row written after it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, update

from musicbutler_pipeline.domain.sends import ClaimOutcome, Sender, SendState
from musicbutler_pipeline.mail.backends.smtp import Pacer, SmtpPool
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.mail.url import mailer_from_url, parse_mail_url
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.digests import iter_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.schema import sends
from tests.builders import add_subscriber, follow, release_group, store_releases
from tests.drills.sink import Sink, SinkHandler

DAY = date(2026, 11, 23)
IDENTITY = MailIdentity(
    mail_from="MusicButler <butler@musicbutler.example>",
    base_url="https://musicbutler.example",
    secret_key=b"delivery-test-key-0123456789",
    postal_address="1 Harbour Road, Dublin",
)
SUBSCRIBERS = 24


@dataclass
class ConcurrencyHandler(SinkHandler):
    """Counts the connections that delivered and the most DATA replies pending at once."""

    peers: set[object] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0
    arrivals: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        with self._lock:
            self.peers.add(session.peer)  # (host, port): one per connection
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self._lock:
                self.in_flight -= 1


def _day(engine: Engine, count: int = SUBSCRIBERS) -> None:
    for number in range(count):
        subscriber_id = add_subscriber(
            engine, f"listener{number}@example.org", f"Listener {number}"
        )
        follow(engine, subscriber_id, "Björk")
    store_releases(engine, DAY, release_group("Fossora", "Björk"))
    with engine.begin() as connection:
        replace_drops(connection, DAY)


def _send(engine: Engine, mail_url: str, run_id: str = "run-1"):
    ledger = SendLedger(engine, Sender(run_id=run_id, host="test", pid=1, code_version="t"))
    return send_digests(
        engine,
        DAY,
        mailer=mailer_from_url(mail_url),
        ledger=ledger,
        identity=IDENTITY,
        clock=lambda: datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )


def test_connections_option_is_checked() -> None:
    assert parse_mail_url("smtp://relay.example?connections=4").connections == 4
    assert parse_mail_url("smtp://relay.example").connections == 1
    for bad in ("0", "-1", "2.5", "many", "33"):
        with pytest.raises(ValueError, match=f"connections={bad!r} must be a whole number"):
            parse_mail_url(f"smtp://relay.example?connections={bad}")
    pool = mailer_from_url("smtp://relay.example?connections=3&rate=5")
    assert isinstance(pool, SmtpPool) and pool.connections == 3
    assert "x3 connections" in pool.description


def test_n_connections_deliver_in_parallel_and_nobody_twice(engine: Engine) -> None:
    _day(engine)
    # A relay that takes 0.3 s to answer each DATA: with 4 connections, 4 wait at once.
    handler = ConcurrencyHandler(delay_seconds=0.3)
    with Sink(handler) as sink:
        report = _send(engine, f"{sink.url}?connections=4")

    assert report.sent == SUBSCRIBERS and report.failed == report.unknown == 0
    received = handler.per_recipient()
    assert len(received) == SUBSCRIBERS and set(received.values()) == {1}
    assert len(handler.peers) == 4
    assert handler.most_in_flight == 4
    states = SendLedger(engine).state_counts(DAY)
    assert states == {SendState.SENT: SUBSCRIBERS}


def test_one_rate_holds_across_all_connections(sqlite_engine: Engine) -> None:
    _day(sqlite_engine, count=9)
    handler = ConcurrencyHandler()
    with Sink(handler) as sink:
        report = _send(sqlite_engine, f"{sink.url}?connections=3&rate=20")

    assert report.sent == 9
    assert len(handler.peers) == 3
    # 9 transactions at 20/s overall are 8 gaps of at least 50 ms: 0.4 s, not 0.4 / 3.
    assert handler.arrivals[-1] - handler.arrivals[0] >= 0.35


def test_pacer_spaces_every_caller_evenly() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = Pacer(10, sleep=sleep, clock=lambda: now[0])
    threads = [threading.Thread(target=pacer.wait) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The clock never moved: the callers got slots 0, 0.1, ..., 0.4 s from now.
    assert sorted(slept) == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_rerun_skips_settled_subscribers_in_sql_and_the_claim_still_guards(
    engine: Engine,
) -> None:
    _day(engine, count=6)
    handler = SinkHandler()
    with Sink(handler) as sink:
        first = _send(engine, sink.url)
        assert first.sent == 6
        assert list(iter_digests(engine, DAY, skip_settled=True)) == []
        assert len(list(iter_digests(engine, DAY))) == 6

        rerun = _send(engine, sink.url, run_id="run-2")
    assert (rerun.sent, rerun.already_sent) == (0, 6)
    assert len(handler.snapshot()) == 6

    # A retryable failure is not settled: it comes back in the stream.
    ledger = SendLedger(engine, Sender(run_id="run-3", host="test", pid=1, code_version="t"))
    [row, *_] = ledger.day(DAY)
    with engine.begin() as connection:
        connection.execute(
            update(sends)
            .where(sends.c.partition_date == DAY, sends.c.subscriber_id == row.subscriber_id)
            .values(state=SendState.FAILED, permanent_failure=False)
        )
    assert [d.subscriber.id for d in iter_digests(engine, DAY, skip_settled=True)] == [
        row.subscriber_id
    ]
    # The skip is only an optimisation: a digest read before a row was settled still meets the
    # atomic claim, which only one sender wins.
    claims = [
        SendLedger(engine, Sender(run_id=f"racer-{n}", host="test", pid=1, code_version="t")).claim(
            DAY,
            row.subscriber_id,
            recipient=row.recipient,
            message_id="<x@y>",
            release_group_count=1,
        )
        for n in range(2)
    ]
    assert [claim.outcome for claim in claims] == [ClaimOutcome.CLAIMED, ClaimOutcome.IN_PROGRESS]

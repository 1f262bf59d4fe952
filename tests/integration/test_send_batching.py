"""Fewer ledger commits per email (issue 15) without a wider crash window.

An accepted email's sent mark travels in the transaction of the next claim; so when any message's
body goes out, every email accepted before it is already recorded sent, and at most one row (the
one being sent) is claimed: what a SIGKILL at that moment leaves (tests/drills/test_crash.py
kills a real process there). An error mid-batch stops the day with every accepted email marked
sent and only the failing one released for a retry: nothing is left for an operator but what is
reported.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.domain.sends import Sender, SendState
from musicbutler_pipeline.mail.backends.base import BeforeBody, Message
from musicbutler_pipeline.mail.backends.memory import MemoryMailer
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.schema import announcements, sends
from tests.builders import add_subscriber, follow, release_group, store_releases

DAY = date(2026, 11, 23)
IDENTITY = MailIdentity(
    mail_from="MusicButler <butler@musicbutler.example>",
    base_url="https://musicbutler.example",
    secret_key=b"batching-test-key-0123456789",
    postal_address="1 Harbour Road, Dublin",
)
SUBSCRIBERS = 12


def _day(engine: Engine) -> None:
    for number in range(SUBSCRIBERS):
        subscriber_id = add_subscriber(
            engine, f"reader{number:02d}@example.org", f"Reader {number}"
        )
        follow(engine, subscriber_id, "Björk")
    store_releases(engine, DAY, release_group("Fossora", "Björk"))
    with engine.begin() as connection:
        replace_drops(connection, DAY)


def _states(engine: Engine) -> Counter[str]:
    with engine.connect() as connection:
        rows = connection.execute(select(sends.c.state, func.count()).group_by(sends.c.state))
        return Counter({state: count for state, count in rows})


class _WatchingMailer(MemoryMailer):
    """Records the ledger's states at each body, and fails with a bug at message ``fail_at``."""

    def __init__(self, engine: Engine, fail_at: int | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.fail_at = fail_at
        self.at_each_body: list[Counter[str]] = []

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        def watched() -> None:
            if before_body is not None:
                before_body()
            self.at_each_body.append(_states(self.engine))

        if self.fail_at is not None and len(self.messages) + 1 == self.fail_at:
            raise RuntimeError("a bug in the transport")
        super().send(message, before_body=watched)


def _send(engine: Engine, mailer: MemoryMailer):
    ledger = SendLedger(engine, Sender(run_id="r1", host="test", pid=1, code_version="t"))
    return send_digests(
        engine,
        DAY,
        mailer=mailer,
        ledger=ledger,
        identity=IDENTITY,
        clock=lambda: datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )


def test_at_every_body_each_earlier_email_is_recorded_sent_and_one_row_is_claimed(
    engine: Engine,
) -> None:
    _day(engine)
    mailer = _WatchingMailer(engine)
    report = _send(engine, mailer)

    assert report.sent == SUBSCRIBERS
    assert mailer.at_each_body == [
        +Counter({SendState.SENT.value: number, SendState.CLAIMED.value: 1})  # no zero counts
        for number in range(SUBSCRIBERS)
    ]
    assert _states(engine) == Counter({SendState.SENT.value: SUBSCRIBERS})
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(announcements)).scalar_one() == (
            SUBSCRIBERS
        )


def test_an_error_mid_batch_leaves_every_accepted_email_sent_and_only_the_failing_one_retryable(
    engine: Engine,
) -> None:
    _day(engine)
    mailer = _WatchingMailer(engine, fail_at=5)
    with pytest.raises(RuntimeError, match="a bug in the transport"):
        _send(engine, mailer)

    assert len(mailer.messages) == 4
    # The fourth email's sent mark was waiting for the fifth claim: written on the way out.
    assert _states(engine) == Counter({SendState.SENT.value: 4, SendState.FAILED.value: 1})
    ledger = SendLedger(engine, Sender(run_id="r2", host="test", pid=2, code_version="t"))
    [failed] = [row for row in ledger.day(DAY) if row.state == SendState.FAILED]
    assert not failed.permanent_failure and "a bug in the transport" in (failed.error or "")

    rerun = _send(engine, MemoryMailer())
    assert (rerun.sent, rerun.already_sent) == (SUBSCRIBERS - 4, 4)
    assert _states(engine) == Counter({SendState.SENT.value: SUBSCRIBERS})

"""send_digests end to end against a real SMTP server: per-recipient failures land in the ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Engine

from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.domain.sends import Sender
from musicbutler_pipeline.mail.backends.smtp import SmtpMailer
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.ledger import SendLedger
from tests.builders import add_subscriber, follow, release_group, store_releases

pytest_plugins = ["tests.fixtures.smtp"]

DAY = date(2026, 11, 23)
IDENTITY = MailIdentity(
    mail_from="MusicButler <butler@musicbutler.example>",
    base_url="https://musicbutler.example",
    secret_key=b"notifier-test-key-0123456789",
    postal_address="1 Harbour Road, Dublin",
)


def _day_with_four_recipients(engine: Engine) -> dict[str, int]:
    ids = {
        email: add_subscriber(engine, email, name)
        for email, name in (
            ("ana@example.org", "Ana"),
            ("gone@example.org", "Gone"),
            ("grey@example.org", "Grey Listed"),
            ("zoe@example.org", "Zoë"),
        )
    }
    for subscriber_id in ids.values():
        follow(engine, subscriber_id, "Björk")
    store_releases(engine, DAY, release_group("Fossora & <Friends>", "Björk"))
    with engine.begin() as connection:
        replace_drops(connection, DAY)
    return ids


def _send(engine: Engine, server, run_id: str, sleeps: list[float]):
    mailer = SmtpMailer(
        server.host,
        server.port,
        timeout=5,
        retry=RetryPolicy(attempts=3, backoff=2.0),
        sleep=sleeps.append,
    )
    ledger = SendLedger(engine, Sender(run_id=run_id, host="test", pid=1, code_version="t"))
    report = send_digests(
        engine,
        DAY,
        mailer=mailer,
        ledger=ledger,
        identity=IDENTITY,
        clock=lambda: datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )
    return report, ledger


def test_550_fails_only_that_subscriber_and_451_is_retried_and_sent(
    sqlite_engine: Engine, smtp_server
) -> None:
    _day_with_four_recipients(sqlite_engine)
    server = smtp_server(
        refuse={
            "gone@example.org": ["550 5.1.1 no such user"],
            "grey@example.org": ["451 4.7.1 greylisted, try again later"],
        }
    )
    sleeps: list[float] = []
    report, ledger = _send(sqlite_engine, server, "run-1", sleeps)

    assert (report.sent, report.failed) == (3, 1)
    assert report.failures == [("gone@example.org", "RCPT TO refused: 550 5.1.1 no such user")]
    rows = {row.recipient: row for row in ledger.day(DAY)}
    assert {email: row.state for email, row in rows.items()} == {
        "ana@example.org": "sent",
        "gone@example.org": "failed",
        "grey@example.org": "sent",
        "zoe@example.org": "sent",
    }
    assert "550 5.1.1 no such user" in (rows["gone@example.org"].error or "")
    assert sleeps == [2.0]  # one backoff, for the greylisted address
    delivered = [message.rcpt_tos[0] for message in server.handler.received]
    assert delivered == ["ana@example.org", "grey@example.org", "zoe@example.org"]
    assert server.handler.connections == 1
    html = server.handler.received[0].parsed().get_body(("html",)).get_content()
    assert "Fossora &amp; &lt;Friends&gt;" in html
    # The sender identity reaches the footer of both parts.
    text = server.handler.received[0].parsed().get_body(("plain",)).get_content()
    assert "Sent by MusicButler · 1 Harbour Road, Dublin" in text
    assert 'Sent by <span dir="auto">MusicButler</span> · <span dir="auto">1 Harbour Road' in html

    # A re-run sends nothing twice and does not retry the permanent failure.
    again, _ = _send(sqlite_engine, server, "run-2", sleeps)
    assert (again.sent, again.failed, again.already_sent, again.failed_before) == (0, 0, 3, 1)
    assert len(server.handler.received) == 3


def test_temporary_failure_is_sent_by_the_next_run(sqlite_engine: Engine, smtp_server) -> None:
    _day_with_four_recipients(sqlite_engine)
    # Deferred on every attempt of the first run (3), accepted on the next run.
    server = smtp_server(refuse={"grey@example.org": ["451 4.7.1 try later"] * 3})
    first, ledger = _send(sqlite_engine, server, "run-1", [])
    assert (first.sent, first.failed) == (3, 1)
    [grey] = [row for row in ledger.day(DAY) if row.recipient == "grey@example.org"]
    assert grey.state == "failed" and "451 4.7.1 try later" in (grey.error or "")

    second, ledger = _send(sqlite_engine, server, "run-2", [])
    assert (second.sent, second.failed, second.already_sent) == (1, 0, 3)
    assert len(server.handler.messages_to("grey@example.org")) == 1


def test_dropped_connection_mid_batch_sends_everyone_once(
    sqlite_engine: Engine, smtp_server
) -> None:
    _day_with_four_recipients(sqlite_engine)
    server = smtp_server(drop_on_mail={2})
    report, _ = _send(sqlite_engine, server, "run-1", [])
    assert (report.sent, report.failed) == (4, 0)
    assert sorted(message.rcpt_tos[0] for message in server.handler.received) == [
        "ana@example.org",
        "gone@example.org",
        "grey@example.org",
        "zoe@example.org",
    ]
    assert server.handler.connections == 2

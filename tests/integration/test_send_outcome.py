"""Unknown outcomes and the phase reached, from the SMTP transaction to the ledger.

Real aiosmtpd servers on loopback that misbehave at a chosen phase
(tests/drills/misbehaving_smtp.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, func, select, text

from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.domain.sends import ClaimOutcome, ReconcileAction, Sender
from musicbutler_pipeline.mail.backends.base import MailOutcomeUnknown
from musicbutler_pipeline.mail.backends.smtp import DATA_REPLY_TIMEOUT, SmtpMailer
from musicbutler_pipeline.mail.url import mailer_from_url
from musicbutler_pipeline.processes import sender_gone
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.schema import announcements
from tests.builders import add_subscriber, mbid
from tests.drills.misbehaving_smtp import Faults, MisbehavingServer

DAY = date(2026, 11, 23)


def _message(number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "butler@example.org"
    message["To"] = f"reader{number}@example.org"
    message["Subject"] = f"New Music for November 23, 2026 ({number})"
    message["Message-ID"] = f"<m{number}@example.org>"
    message.set_content("hello\n.\nnot the end\n")
    return message


def _mailer(server: MisbehavingServer, **options: str) -> SmtpMailer:
    mailer = mailer_from_url(server.url(**options))
    assert isinstance(mailer, SmtpMailer)
    mailer.retry = RetryPolicy(attempts=4, backoff=0.0)
    return mailer


def test_data_timeout_defaults_to_the_rfc_and_is_validated() -> None:
    mailer = mailer_from_url("smtp://127.0.0.1:2525")
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.timeout, mailer.data_timeout) == (30.0, DATA_REPLY_TIMEOUT) == (30.0, 600.0)
    with pytest.raises(ValueError, match="data_timeout='0' must be greater than 0"):
        mailer_from_url("smtp://127.0.0.1:2525?data_timeout=0")


def test_final_reply_later_than_command_timeout_is_waited_for() -> None:
    with MisbehavingServer(Faults(late_reply={1: 1.5})) as server:
        mailer = _mailer(server, timeout="0.5", data_timeout="10")
        with mailer:
            mailer.send(_message(1))
            mailer.send(_message(2))
        assert server.handler.per_recipient() == {
            "reader1@example.org": 1,
            "reader2@example.org": 1,
        }
        assert mailer.connections_opened == 1


@pytest.mark.parametrize(
    "faults",
    [Faults(late_reply={2: 3.0}), Faults(drop_after_store={2}), Faults(garbled_reply={2})],
    ids=["late", "dropped", "garbled"],
)
def test_no_reply_after_the_end_of_data_is_unknown_and_never_retried(faults: Faults) -> None:
    with MisbehavingServer(faults) as server:
        mailer = _mailer(server, data_timeout="0.5")
        phases: list[int] = []
        with mailer:
            mailer.send(_message(1))
            with pytest.raises(MailOutcomeUnknown) as raised:
                mailer.send(_message(2), before_body=lambda: phases.append(2))
            mailer.send(_message(3))
        assert raised.value.outcome_unknown and raised.value.phase == "reply"
        assert not raised.value.permanent
        assert "reply to the end of DATA" in str(raised.value)
        assert phases == [2]
        # One copy of the unknown one (the server has it), the next one on a fresh connection.
        assert server.handler.per_recipient() == {
            "reader1@example.org": 1,
            "reader2@example.org": 1,
            "reader3@example.org": 1,
        }
        assert mailer.connections_opened == 2


def test_faults_before_the_body_are_retried_and_reach_the_hook_once() -> None:
    with MisbehavingServer(Faults(drop_at_rcpt={2}, refuse_data={3})) as server:
        mailer = _mailer(server)
        calls: list[str] = []
        with mailer:
            for number in (1, 2, 3):
                mailer.send(_message(number), before_body=lambda n=number: calls.append(str(n)))
        assert calls == ["1", "2", "3"]
        assert set(server.handler.per_recipient().values()) == {1}
        assert len(server.handler.per_recipient()) == 3


def _ledger(engine: Engine) -> SendLedger:
    return SendLedger(
        engine,
        Sender(run_id="run-1", host="host-a", pid=4242, code_version="v1"),
        sender_gone=sender_gone,
    )


def _claim(ledger: SendLedger, subscriber_id: int, day: date = DAY):
    return ledger.claim(
        day, subscriber_id, recipient="x@example.com", message_id="<m@x>", release_group_count=1
    )


def test_unknown_is_never_claimed_again_and_reconcile_decides(engine: Engine) -> None:
    ana, ben = add_subscriber(engine, "ana@example.com"), add_subscriber(engine, "ben@example.com")
    ledger = _ledger(engine)
    for subscriber in (ana, ben):
        claim = _claim(ledger, subscriber)
        ledger.mark_phase(claim, "body")
        ledger.mark_unknown(claim, "no reply to the end of DATA", phase="reply")
    rows = {row.subscriber_id: row for row in ledger.day(DAY)}
    assert {row.state for row in rows.values()} == {"unknown"}
    assert rows[ana].phase == "reply" and rows[ana].may_have_been_delivered
    assert _claim(_ledger(engine), ana).outcome is ClaimOutcome.OUTCOME_UNKNOWN
    assert [row.subscriber_id for row in ledger.unknown_outcomes(DAY)] == [ana, ben]

    resent = ledger.reconcile(DAY, ReconcileAction.RESEND, subscriber_ids=[ana])
    marked = ledger.reconcile(DAY, ReconcileAction.MARK_SENT, subscriber_ids=[ben])
    assert (resent.changed, marked.changed) == (1, 1)
    rows = {row.subscriber_id: row for row in ledger.day(DAY)}
    assert rows[ana].state == "failed"
    assert (rows[ana].error or "").startswith("outcome unknown; released for resend")
    assert rows[ben].state == "sent"
    assert (rows[ben].error or "").startswith("outcome unknown; marked sent")
    assert _claim(_ledger(engine), ana).outcome is ClaimOutcome.CLAIMED
    assert ledger.unknown_outcomes(DAY) == []


def test_phase_tells_a_kill_before_the_transaction_from_one_after_the_body(
    engine: Engine,
) -> None:
    ana, ben = add_subscriber(engine, "ana@example.com"), add_subscriber(engine, "ben@example.com")
    ledger = _ledger(engine)
    _claim(ledger, ana)  # killed before any SMTP command
    ledger.mark_phase(_claim(ledger, ben), "body")  # killed while the body went out
    rows = {row.subscriber_id: row for row in ledger.day(DAY)}
    assert (rows[ana].phase, rows[ana].may_have_been_delivered) == ("claimed", False)
    assert (rows[ben].phase, rows[ben].may_have_been_delivered) == ("body", True)


def test_unsent_days_count_every_reason(engine: Engine) -> None:
    from musicbutler_pipeline.warehouse.schema import drops

    people = [add_subscriber(engine, f"p{n}@example.com") for n in range(6)]
    with engine.begin() as connection:
        connection.execute(
            drops.insert(),
            [
                {
                    "partition_date": DAY,
                    "subscriber_id": person,
                    "release_group_mbid": mbid("rg:x"),
                    "artist_mbid": mbid("artist:x"),
                    "artist_name": "X",
                }
                for person in people
            ],
        )
    ledger = _ledger(engine)
    sent, temporary, rejected, unknown, _still_claimed = (_claim(ledger, p) for p in people[:5])
    ledger.mark_sent(sent, DAY, people[0], [mbid("rg:x")])
    ledger.mark_failed(temporary, "421", permanent=False, phase="connect")
    ledger.mark_failed(rejected, "550", permanent=True, phase="rcpt")
    ledger.mark_unknown(unknown, "no reply", phase="reply")
    [day] = ledger.unsent_days(DAY, DAY)
    assert (day.retryable, day.rejected, day.unknown, day.claimed, day.never_claimed) == (
        1,
        1,
        1,
        1,
        1,
    )
    assert day.total == 5 and day.needs_attention == 4
    assert ledger.unsent_days(DAY + timedelta(days=1)) == []
    [retry] = ledger.retryable_failures(DAY, DAY)
    assert (retry.failures, retry.attempts) == (1, 1)
    assert isinstance(retry.last_failed_at, datetime) and retry.last_failed_at.tzinfo


def test_migration_keeps_announcements_on_sqlite(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO subscribers (id, email, subscribed_at, updated_at) "
                "VALUES (1, 'a@x.org', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO sends (id, partition_date, subscriber_id, state, claim_token, run_id,"
                " host, pid, code_version, message_id, recipient, release_group_count,"
                " claimed_at, updated_at) VALUES (7, '2026-11-23', 1, 'sent', 't', 'r', 'h', 1,"
                " 'v', 'm', 'a@x.org', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text("INSERT INTO announcements VALUES (1, 'rg1', '2026-11-23', 7, CURRENT_TIMESTAMP)")
        )
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(announcements)).scalar() == 1
        phase = connection.execute(text("SELECT phase FROM sends WHERE id = 7")).scalar()
    assert phase == "accepted"
    engine.dispose()

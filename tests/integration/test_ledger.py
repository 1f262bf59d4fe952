"""The send ledger's claim rules, on SQLite and PostgreSQL."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.domain.ledger import ClaimOutcome, LostClaim, Sender, SendLedger
from musicbutler_pipeline.warehouse.schema import announcements
from tests.builders import add_subscriber, mbid

DAY = date(2026, 11, 23)


def _ledger(engine: Engine, run_id: str) -> SendLedger:
    return SendLedger(engine, Sender(run_id=run_id, host="host-a", pid=4242, code_version="v1"))


def _claim(ledger: SendLedger, subscriber_id: int):
    return ledger.claim(
        DAY, subscriber_id, recipient="ana@example.com", message_id="<m@x>", release_group_count=2
    )


def test_only_the_first_claim_wins_and_records_who(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    first, second = _ledger(engine, "run-1"), _ledger(engine, "run-2")
    won = _claim(first, ana)
    assert won.outcome is ClaimOutcome.CLAIMED
    assert _claim(second, ana).outcome is ClaimOutcome.IN_PROGRESS
    first.mark_sent(won, DAY, ana, [mbid("rg:a"), mbid("rg:b")])
    assert _claim(second, ana).outcome is ClaimOutcome.ALREADY_SENT
    [row] = first.day(DAY)
    assert (row.state, row.run_id, row.host, row.pid, row.code_version) == (
        "sent",
        "run-1",
        "host-a",
        4242,
        "v1",
    )
    assert row.sent_at is not None
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(announcements)).scalar() == 2


def test_mark_sent_needs_the_claim_token(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ledger = _ledger(engine, "run-1")
    won = _claim(ledger, ana)
    forged = type(won)(won.outcome, won.send_id, "not-the-token")
    with pytest.raises(LostClaim):
        ledger.mark_sent(forged, DAY, ana, [mbid("rg:a")])
    assert ledger.day(DAY)[0].state == "claimed"


def test_temporary_failure_is_reclaimed_permanent_is_not(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    ledger = _ledger(engine, "run-1")
    ledger.mark_failed(_claim(ledger, ana), "451 try later", permanent=False)
    ledger.mark_failed(_claim(ledger, ben), "550 no such user", permanent=True)
    retry = _ledger(engine, "run-2")
    again = _claim(retry, ana)
    assert again.outcome is ClaimOutcome.CLAIMED
    assert _claim(retry, ben).outcome is ClaimOutcome.FAILED_PERMANENT
    rows = {row.subscriber_id: row for row in retry.day(DAY)}
    assert (rows[ana].attempts, rows[ana].run_id, rows[ana].error) == (2, "run-2", None)
    assert rows[ben].error == "550 no such user"


def test_stale_claims_are_the_old_unfinished_ones(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    ledger = _ledger(engine, "run-1")
    _claim(ledger, ana)
    ledger.mark_sent(_claim(ledger, ben), DAY, ben, [mbid("rg:a")])
    assert ledger.stale_claims(timedelta(minutes=30)) == []
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    stale = ledger.stale_claims(timedelta(minutes=30), now=an_hour_later)
    assert [(row.subscriber_id, row.state) for row in stale] == [(ana, "claimed")]

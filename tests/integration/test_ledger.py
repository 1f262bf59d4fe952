"""The send ledger's claim rules, on SQLite and PostgreSQL."""

import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.domain.sends import (
    ClaimOutcome,
    LostClaim,
    ReconcileAction,
    Sender,
    SentMark,
)
from musicbutler_pipeline.processes import sender_gone
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.schema import announcements
from tests.builders import add_subscriber, mbid

DAY = date(2026, 11, 23)


def _ledger(engine: Engine, run_id: str) -> SendLedger:
    return SendLedger(
        engine,
        Sender(run_id=run_id, host="host-a", pid=4242, code_version="v1"),
        sender_gone=sender_gone,
    )


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


def test_a_claim_writes_the_sent_marks_it_carries_in_the_same_commit(engine: Engine) -> None:
    ana, ben, cy = (add_subscriber(engine, f"{name}@example.com") for name in ("ana", "ben", "cy"))
    ledger = _ledger(engine, "run-1")
    first, second = _claim(ledger, ana), _claim(ledger, ben)
    marks = [
        SentMark(first, DAY, ana, (mbid("rg:a"), mbid("rg:b"))),
        SentMark(second, DAY, ben, (mbid("rg:a"),)),
    ]
    third = ledger.claim(
        DAY, cy, recipient="cy@example.com", message_id="<c@x>", release_group_count=1, settle=marks
    )
    assert third.outcome is ClaimOutcome.CLAIMED
    assert {row.subscriber_id: row.state for row in ledger.day(DAY)} == {
        ana: "sent",
        ben: "sent",
        cy: "claimed",
    }
    with engine.connect() as connection:
        announced = connection.execute(
            select(announcements.c.subscriber_id, announcements.c.release_group_mbid)
        ).all()
    assert sorted(announced) == sorted(
        [(ana, mbid("rg:a")), (ana, mbid("rg:b")), (ben, mbid("rg:a"))]
    )


def test_a_claim_carrying_a_lost_mark_claims_nothing_and_writes_the_held_ones(
    engine: Engine,
) -> None:
    ana, ben, cy = (add_subscriber(engine, f"{name}@example.com") for name in ("ana", "ben", "cy"))
    ledger = _ledger(engine, "run-1")
    held, taken = _claim(ledger, ana), _claim(ledger, ben)
    # An operator resolved ben's claim meanwhile: it is no longer this sender's to mark.
    ledger.reconcile(DAY, ReconcileAction.RESEND, subscriber_ids=[ben], include_live=True)
    with pytest.raises(LostClaim):
        ledger.claim(
            DAY,
            cy,
            recipient="cy@example.com",
            message_id="<c@x>",
            release_group_count=1,
            settle=[
                SentMark(held, DAY, ana, (mbid("rg:a"),)),
                SentMark(taken, DAY, ben, (mbid("rg:a"),)),
            ],
        )
    assert {row.subscriber_id: row.state for row in ledger.day(DAY)} == {
        ana: "sent",
        ben: "failed",
    }
    with engine.connect() as connection:
        assert connection.execute(select(announcements.c.subscriber_id)).scalars().all() == [ana]


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
    assert ledger.unresolved_claims(timedelta(minutes=30)) == []
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    stale = [
        row for row, _why in ledger.unresolved_claims(timedelta(minutes=30), now=an_hour_later)
    ]
    assert [(row.subscriber_id, row.state) for row in stale] == [(ana, "claimed")]


def test_reconcile_leaves_live_claims_alone_and_resends_dead_ones(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    dead = SendLedger(
        engine, Sender(run_id="run-1", host=socket.gethostname(), pid=2**22 + 7, code_version="v1")
    )
    live = _ledger(engine, "run-2")  # another host: alive until its claim is 30 minutes old
    ben = add_subscriber(engine, "ben@example.com")
    _claim(dead, ana)
    _claim(live, ben)
    result = SendLedger(engine, sender_gone=sender_gone).reconcile(DAY, ReconcileAction.RESEND)
    assert result.changed == 1
    assert [row.subscriber_id for row in result.left_alone] == [ben]
    retry = _ledger(engine, "run-3")
    again = _claim(retry, ana)
    assert again.outcome is ClaimOutcome.CLAIMED
    row = {r.subscriber_id: r for r in retry.day(DAY)}[ana]
    assert (row.attempts, row.message_id) == (2, "<m@x>")  # same Message-ID on the resend


def test_reconcile_mark_sent_announces_the_days_drops(engine: Engine) -> None:
    from musicbutler_pipeline.warehouse.drops import replace_drops
    from tests.builders import follow, release_group, store_releases

    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Björk")
    store_releases(engine, DAY, release_group("Utopia II", "Björk"))
    with engine.begin() as connection:
        replace_drops(connection, DAY)
    _claim(_ledger(engine, "run-1"), ana)
    reconciler = SendLedger(engine, sender_gone=sender_gone)
    result = reconciler.reconcile(DAY, ReconcileAction.MARK_SENT, include_live=True)
    assert (result.changed, result.left_alone) == (1, [])
    assert SendLedger(engine).day(DAY)[0].state == "sent"
    with engine.connect() as connection:
        announced = connection.execute(select(announcements.c.release_group_mbid)).scalars().all()
    assert announced == [mbid("rg:Utopia II")]

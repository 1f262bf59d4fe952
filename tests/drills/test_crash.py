"""Drill: the sender is killed with SIGKILL in the middle of the batch."""

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from musicbutler_pipeline.warehouse.schema import announcements
from tests.drills.environment import DAY, make_drill, output, wait_for
from tests.drills.sink import Sink, SinkHandler

EMAILS_OWED = 38
KILLED_AT = 10  # the sink holds the 10th message unanswered while the sender is killed


# Real processes for half a minute or more: in `make drills`, which CI runs after `make test`.
@pytest.mark.drills_matrix
def test_sigkill_mid_batch_never_doubles_and_is_reconciled(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    with Sink(SinkHandler(hold_at=KILLED_AT)) as sink:
        drill_env = make_drill(tmp_path, postgres_database, sink.url)
        drill = next(drill_env)
        try:
            sender = drill.start("musicbutler", "run", "--date", DAY)
            wait_for(sink.handler.reached.is_set, timeout=180, what="the sender mid-batch")
            os.killpg(sender.pid, signal.SIGKILL)
            sender.wait(timeout=30)
            sink.handler.release.set()

            rows = {row.recipient: row for row in drill.ledger()}
            states = sorted(row.state for row in rows.values())
            assert states.count("sent") == KILLED_AT - 1 and states.count("claimed") == 1
            [limbo] = [row for row in rows.values() if row.state == "claimed"]

            doctor = drill.musicbutler("doctor")
            assert doctor.returncode == 1, doctor.stdout + doctor.stderr
            assert f"stale claim: {DAY} {limbo.recipient}" in doctor.stdout
            assert f"sender pid {limbo.pid} on {limbo.host} is gone" in doctor.stdout

            rerun = drill.musicbutler("run", "--date", DAY)
            assert rerun.returncode == 0, rerun.stderr
            remaining = EMAILS_OWED - KILLED_AT
            # Issue 10: a claim whose process is known dead is a stale claim, not "being sent".
            assert (
                f"{remaining} email(s) sent, {KILLED_AT - 1} already sent earlier, "
                "0 being sent by another process, 1 stale claim(s)" in rerun.stdout
            )
            assert "belong to a sender that is gone" in rerun.stdout
            sends = drill.musicbutler("sends", "--date", DAY)
            assert "1 undecided: 0 never reached the message body" in sends.stdout

            received = sink.handler.per_recipient()
            print(
                f"\nSIGKILL at message {KILLED_AT}: {EMAILS_OWED} owed, "
                f"{sum(received.values())} received, {len(received)} recipients, "
                f"max per recipient {max(received.values())}, stale claims reported: 1"
            )
            assert len(received) == EMAILS_OWED and set(received.values()) == {1}

            reconcile = drill.musicbutler("sends", "reconcile", "--date", DAY, "--mark-sent")
            assert reconcile.returncode == 0, reconcile.stderr
            assert "1 claim(s) marked sent" in reconcile.stdout
            healthy = drill.musicbutler("doctor")
            assert healthy.returncode == 0, healthy.stdout
            assert {row.state for row in drill.ledger()} == {"sent"}
            with drill.engine.connect() as connection:
                announced = connection.execute(
                    select(func.count())
                    .select_from(announcements)
                    .where(announcements.c.send_id == limbo_id(drill, limbo.recipient))
                ).scalar_one()
            assert announced == limbo.release_group_count
        finally:
            _ = output  # logs stay in tmp_path for a failed drill
            drill_env.close()


def limbo_id(drill, recipient: str) -> int:
    from musicbutler_pipeline.warehouse.schema import sends

    with drill.engine.connect() as connection:
        return connection.execute(
            select(sends.c.id).where(sends.c.recipient == recipient)
        ).scalar_one()

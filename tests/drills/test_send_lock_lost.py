"""Drill: the send lock's PostgreSQL connection dies in the middle of the batch.

The advisory lock lives as long as its connection. Once the server has terminated that backend,
another process can take the lock, so the sender that lost it must stop sending (issue 10). The
ledger still guarantees one email per subscriber; the lock is the first layer, and it must mean
what it says.
"""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.drills.environment import DAY, make_drill, output, wait_for
from tests.drills.sink import Sink, SinkHandler

EMAILS_OWED = 38
LOST_AT = 3  # the sink holds the 3rd message while the lock's backend is terminated


def _terminate_send_lock_backend(warehouse_url: str) -> int:
    """pg_terminate_backend on the session holding the day's send lock, as an operator (or a
    failover, or an idle-session timeout) would end it. Returns how many were ended."""
    engine = create_engine(warehouse_url)
    try:
        with engine.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name LIKE :name"
                    ),
                    {"name": f"musicbutler musicbutler:send-{DAY}%"},
                ).all()
            )
    finally:
        engine.dispose()


def test_a_sender_whose_lock_connection_died_stops_sending(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    with Sink(SinkHandler(hold_at=LOST_AT)) as sink:
        drill_env = make_drill(tmp_path, postgres_database, sink.url)
        drill = next(drill_env)
        try:
            sender = drill.start("musicbutler", "run", "--date", DAY)
            wait_for(sink.handler.reached.is_set, timeout=180, what="the sender mid-batch")
            assert _terminate_send_lock_backend(drill.warehouse_url) == 1
            sink.handler.release.set()
            assert sender.wait(timeout=120) == 1, output(sender)
            assert f"the lock musicbutler:send-{DAY} is no longer held" in output(sender)

            # It stopped at the next subscriber: no claim left behind, nothing after the lock.
            assert sorted(row.state for row in drill.ledger()) == ["sent"] * LOST_AT
            assert sum(sink.handler.per_recipient().values()) == LOST_AT

            rerun = drill.musicbutler("run", "--date", DAY)
            assert rerun.returncode == 0, rerun.stderr
            assert f"{EMAILS_OWED - LOST_AT} email(s) sent" in rerun.stdout
            received = sink.handler.per_recipient()
            assert len(received) == EMAILS_OWED and set(received.values()) == {1}
        finally:
            drill_env.close()

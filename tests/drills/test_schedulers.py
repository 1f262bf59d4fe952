"""Drills: two schedulers on one instance."""

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy import select

from musicbutler_pipeline.warehouse.dialect import as_utc
from musicbutler_pipeline.warehouse.schema import (
    operator_alerts,
    scheduler_presence,
    scheduler_signals,
)
from tests.drills.environment import Drill, output, wait_for
from tests.drills.sink import Sink

EMAILS_OWED = 38
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _children(pid: int) -> list[str]:
    """Command lines of a process's children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def _instance(drill: Drill, monkeypatch: pytest.MonkeyPatch) -> DagsterInstance:
    monkeypatch.setenv("MUSICBUTLER_DAGSTER_POSTGRES_URL", drill.instance_url)
    return DagsterInstance.from_config(str(drill.dagster_home))


def test_second_musicbutler_daemon_never_starts_a_scheduler(drill: Drill) -> None:
    first = drill.start("musicbutler", "-v", "daemon")
    wait_for(lambda: "instance lock taken" in output(first), timeout=60, what="first daemon")
    wait_for(
        lambda: any("dagster-daemon run" in c for c in _children(first.pid)),
        timeout=30,
        what="the first daemon's dagster-daemon",
    )

    second = drill.start("musicbutler", "-v", "daemon")
    assert second.wait(timeout=60) == 1
    assert "another scheduler holds this instance's lock" in output(second)
    assert "starting" not in output(second).replace("not starting", "")

    waiting = drill.start("musicbutler", "-v", "daemon", "--wait")
    wait_for(lambda: "waiting" in output(waiting), timeout=60, what="the third daemon waiting")
    assert not _children(waiting.pid) or not any(
        "dagster-daemon" in c for c in _children(waiting.pid)
    )
    os.killpg(first.pid, signal.SIGTERM)
    assert first.wait(timeout=60) is not None
    wait_for(
        lambda: "instance lock taken" in output(waiting),
        timeout=60,
        what="the waiting daemon to take over",
    )
    print(
        f"\ntwo musicbutler daemons: second exited {second.returncode} without a scheduler; "
        "--wait took over after the first stopped"
    )


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_killed_musicbutler_daemon_takes_its_scheduler_with_it(drill: Drill) -> None:
    supervisor = drill.start("musicbutler", "-v", "daemon")
    wait_for(lambda: "instance lock taken" in output(supervisor), timeout=60, what="the daemon")
    wait_for(
        lambda: any("dagster-daemon run" in c for c in _children(supervisor.pid)),
        timeout=30,
        what="its dagster-daemon",
    )
    [scheduler] = [
        int(child)
        for task in Path(f"/proc/{supervisor.pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    # SIGKILL to the supervisor alone (not its group): nothing of ours runs to stop the child.
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait(timeout=30)
    wait_for(lambda: not _running(scheduler), timeout=60, what="the orphaned scheduler to stop")

    # The lock went with the supervisor: the next `musicbutler daemon` starts a scheduler at once.
    successor = drill.start("musicbutler", "-v", "daemon")
    wait_for(lambda: "instance lock taken" in output(successor), timeout=60, what="a new daemon")
    print(f"\nSIGKILL to musicbutler daemon: its dagster-daemon (pid {scheduler}) stopped too")


# About two minutes of real daemons and runs: in `make drills`, which CI runs after `make test`.
@pytest.mark.drills_matrix
def test_two_dagster_daemons_still_send_once_and_are_detected(
    drill: Drill, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bypassing our lock: two plain dagster-daemon processes with a schedule ticking each
    minute. Both fire every tick; the ledger keeps it to one email each; the operator is alerted
    within the promised 2 minutes, with every sensor at its default interval."""
    drill.extra_env["MUSICBUTLER_OPERATOR_EMAIL"] = "ops@example.org"
    command = ("dagster-daemon", "run", "-m", "tests.drills.drill_definitions")
    first = drill.start(*command)

    def presences() -> list:
        with drill.engine.connect() as connection:
            return connection.execute(select(scheduler_presence)).all()

    wait_for(lambda: len(presences()) == 1, timeout=120, what="the first daemon's presence")
    second_started = datetime.now(UTC)
    second = drill.start(*command)
    [second_seen] = wait_for(
        lambda: [p for p in presences() if p.daemon_pid == second.pid],
        timeout=120,
        what="the second daemon's presence",
    )

    def alert():
        with drill.engine.connect() as connection:
            return connection.execute(select(operator_alerts)).first()

    raised = wait_for(alert, timeout=120, what="the duplicate-scheduler alert")
    delay = (as_utc(raised.created_at) - second_started).total_seconds()
    print(
        f"\ndetection: alert {delay:.1f}s after the second daemon started "
        f"({(as_utc(second_seen.first_seen) - second_started).total_seconds():.1f}s to its "
        "first presence)"
    )
    assert delay <= 120  # the promised bound; the delay itself is load's business

    instance = _instance(drill, monkeypatch)

    def finished_scheduled_runs() -> list:
        runs = instance.get_runs(
            filters=RunsFilter(tags={"dagster/schedule_name": "drill_every_minute"})
        )
        return [run for run in runs if run.status in FINISHED]

    done = wait_for(
        lambda: len(finished_scheduled_runs()) >= 2 and finished_scheduled_runs(),
        timeout=240,
        what="two scheduled runs to finish",
        interval=1,
    )

    def double_ticks() -> list:
        with drill.engine.connect() as connection:
            return connection.execute(
                select(scheduler_signals).where(scheduler_signals.c.signal == "double_tick")
            ).all()

    [double_tick, *_] = wait_for(
        double_ticks, timeout=90, what="the double-launched tick to be recorded", interval=1
    )
    for process in (first, second):
        os.killpg(process.pid, signal.SIGTERM)
    for process in (first, second):
        process.wait(timeout=60)

    received = sink.handler.per_recipient()
    alerts = sink.handler.per_recipient(subject_prefix="[MusicButler]")
    print(
        f"two dagster-daemons: {len(done)} scheduled runs finished, {EMAILS_OWED} owed, "
        f"{sum(received.values())} received, max per recipient {max(received.values())}, "
        f"operator e-mails {sum(alerts.values())}; {double_tick.detail}"
    )
    assert len(received) == EMAILS_OWED and set(received.values()) == {1}
    assert {run.status for run in done} == {DagsterRunStatus.SUCCESS}, [
        (run.run_id, run.status) for run in done
    ]
    assert alerts == {"ops@example.org": 1}
    rows = drill.ledger()
    assert len({row.run_id for row in rows}) == 1 and {row.state for row in rows} == {"sent"}
    instance.dispose()

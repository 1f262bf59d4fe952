"""The scheduler evidence in the warehouse: presences, signals, the hourly alert claim."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from musicbutler_pipeline.domain.schedulers import (
    EVIDENCE_WINDOW,
    HEARTBEAT_SIGNAL,
    HeartbeatWatch,
    another_daemon_in_log,
    double_launched_ticks,
)
from musicbutler_pipeline.processes import scheduler_of_this_process
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.warehouse.monitoring import (
    claim_alert,
    recent_presences,
    record_presence,
    record_signal,
)

T0 = datetime(2026, 11, 23, 14, 59, 53, tzinfo=UTC)


def test_alert_claims_are_once_an_hour_across_the_hour_boundary(sqlite_engine: Engine) -> None:
    assert claim_alert(sqlite_engine, "kind", "first", now=T0)
    assert not claim_alert(sqlite_engine, "kind", "again", now=T0 + timedelta(seconds=10))
    assert not claim_alert(sqlite_engine, "kind", "again", now=T0 + timedelta(minutes=59))
    assert claim_alert(sqlite_engine, "kind", "next", now=T0 + timedelta(minutes=61))
    assert claim_alert(sqlite_engine, "other kind", "first", now=T0)


def test_a_pid_reused_by_a_later_process_starts_a_new_lifetime(sqlite_engine: Engine) -> None:
    first_start, second_start = T0 - timedelta(minutes=5), T0 + timedelta(seconds=3)
    for seconds in (0, 5):
        record_presence(
            sqlite_engine,
            pid=1,
            code_version="v1",
            now=T0 + timedelta(seconds=seconds),
            started_at=first_start,
        )
    record_presence(
        sqlite_engine,
        pid=1,
        code_version="v2",
        now=T0 + timedelta(seconds=10),
        started_at=second_start,
    )
    [presence] = recent_presences(sqlite_engine, since=T0 - timedelta(minutes=1))
    assert presence.first_seen == T0 + timedelta(seconds=10)
    assert (presence.code_version, presence.started_at) == ("v2", second_start)


def test_evidence_is_current_for_a_window_then_clears(sqlite_engine: Engine) -> None:
    for pid, start in ((10, 0), (11, 20)):
        for seconds in range(start, 45, 5):
            record_presence(
                sqlite_engine, pid=pid, code_version="v", now=T0 + timedelta(seconds=seconds)
            )
    evidence = scheduler_evidence(sqlite_engine, now=T0 + timedelta(seconds=45))
    assert [p.daemon_pid for p in evidence.concurrent] == [10, 11]
    assert "pid 10 on" in (evidence.problem or "") and "pid 11 on" in (evidence.problem or "")
    later = T0 + timedelta(seconds=41) + EVIDENCE_WINDOW
    assert scheduler_evidence(sqlite_engine, now=later).problem is None


def test_a_restart_does_not_overlap(sqlite_engine: Engine) -> None:
    for pid, seconds in ((10, range(0, 30, 5)), (11, range(31, 60, 5))):
        for second in seconds:
            record_presence(
                sqlite_engine, pid=pid, code_version="v", now=T0 + timedelta(seconds=second)
            )
    assert scheduler_evidence(sqlite_engine, now=T0 + timedelta(seconds=60)).problem is None


def test_a_signal_alone_names_the_one_known_scheduler(sqlite_engine: Engine) -> None:
    record_presence(sqlite_engine, pid=10, code_version="new", now=T0)
    record_signal(sqlite_engine, HEARTBEAT_SIGNAL, "SCHEDULER a b", "changing hands", now=T0)
    problem = scheduler_evidence(sqlite_engine, now=T0 + timedelta(seconds=5)).problem or ""
    assert "pid 10 on" in problem and "without a presence record" in problem
    assert "changing hands" in problem


def test_heartbeat_watch_sees_owners_return_and_forgets_them() -> None:
    watch = HeartbeatWatch(memory=timedelta(seconds=60))
    samples = ["a", "a", "b", "b", "a"]
    results = [
        watch.observe({"SCHEDULER": owner}, T0 + timedelta(seconds=2 * i))
        for i, owner in enumerate(samples)
    ]
    assert results[-1] == {"SCHEDULER": ["a", "b", "a"]}
    assert all(result == {} for result in results[:-1])
    # b stopped: a alone for longer than the memory, and the evidence ends.
    assert watch.observe({"SCHEDULER": "a"}, T0 + timedelta(seconds=80)) == {}
    restart = HeartbeatWatch()
    for i, owner in enumerate(["a", "a", "c", "c", "c"]):
        assert restart.observe({"SCHEDULER": owner}, T0 + timedelta(seconds=2 * i)) == {}


def test_two_runs_for_one_tick_and_partition() -> None:
    runs = [
        ("daily", "2026-11-23T21:35:00+00:00", "2026-11-23", "run-1"),
        ("daily", "2026-11-23T21:35:00+00:00", "2026-11-23", "run-2"),
        ("daily", "2026-11-22T21:35:00+00:00", "2026-11-22", "run-3"),
        ("backfill", "2026-11-23T21:35:00+00:00", "2026-11-21", "run-4"),
        ("backfill", "2026-11-23T21:35:00+00:00", "2026-11-20", "run-5"),
    ]
    assert double_launched_ticks(runs) == {
        ("daily", "2026-11-23T21:35:00+00:00", "2026-11-23"): ["run-1", "run-2"]
    }


def test_dagsters_own_log_line_is_recognised() -> None:
    line = (
        "2026-12-01 14:53:06 +0000 - dagster.daemon.SchedulerDaemon - ERROR - Another "
        "SCHEDULER daemon is still sending heartbeats. You likely have multiple daemon processes"
    )
    assert another_daemon_in_log(line) == "SCHEDULER"
    assert another_daemon_in_log("SchedulerDaemon - INFO - Checking for new runs") is None


def test_no_watch_outside_a_schedulers_code_server() -> None:
    assert scheduler_of_this_process() is None  # pytest is no dagster-daemon's code server


def test_musicbutler_daemon_records_dagsters_another_daemon_line(
    sqlite_engine: Engine, tmp_path, capfd
) -> None:
    import sys

    from dagster import DagsterInstance

    from musicbutler_pipeline.daemon import run_daemon
    from musicbutler_pipeline.domain.schedulers import DAEMON_LOG_SIGNAL
    from musicbutler_pipeline.warehouse.monitoring import recent_signals

    line = (
        "dagster.daemon.SchedulerDaemon - ERROR - Another SCHEDULER daemon is still sending "
        "heartbeats. You likely have multiple daemon processes running at once"
    )
    # Dagster's daemon logs to stdout; a code server's warnings come on stderr.
    child = [
        sys.executable,
        "-c",
        f"import sys; print({line!r}); print('a code server warning', file=sys.stderr)",
    ]
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        code = run_daemon(instance, wait=False, command=child, warehouse_url=str(sqlite_engine.url))
    assert code == 0
    [signal] = recent_signals(sqlite_engine, since=datetime.now(UTC) - timedelta(minutes=1))
    assert signal.signal == DAEMON_LOG_SIGNAL and signal.subject.startswith("SCHEDULER ")
    relayed = capfd.readouterr()  # still passed on to the operator's log
    assert line in relayed.out and "a code server warning" in relayed.err

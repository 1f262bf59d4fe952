"""Drills: a real SMTP server on loopback that misbehaves at each phase of the transaction,
against `musicbutler run` as a process on the bundled sample day (38 owed emails).

Every owed email is accounted for: received exactly once, or recorded `unknown` and reported
(run exit code, doctor, the day's check, operator mail), or failed and retried.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import AssetCheckEvaluation, DagsterEventType, DagsterInstance

from tests.drills.environment import DAY, Drill, make_drill, output, wait_for
from tests.drills.misbehaving_smtp import Faults, MisbehavingServer

EMAILS_OWED = 38
OPERATOR = "ops@example.org"


@contextmanager
def running(
    tmp_path: Path, postgres_database: Callable[[], str], server: MisbehavingServer, url: str
) -> Iterator[Drill]:
    with contextmanager(make_drill)(tmp_path, postgres_database, url) as drill:
        drill.extra_env["MUSICBUTLER_OPERATOR_EMAIL"] = OPERATOR
        yield drill


def _states(drill: Drill) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in drill.ledger():
        found.setdefault(row.state, []).append(row.recipient)
    return found


def _run_id(stdout: str) -> str:
    match = re.search(r"Dagster run (\S+) on the instance", stdout)
    assert match, stdout
    return match.group(1)


def _check_results(
    drill: Drill, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[bool, str | None]]:
    """The asset check evaluations the run recorded: name -> (passed, partition)."""
    monkeypatch.setenv("MUSICBUTLER_DAGSTER_POSTGRES_URL", drill.instance_url)
    instance = DagsterInstance.from_config(str(drill.dagster_home))
    try:
        records = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        results = {}
        for record in records:
            assert record.dagster_event is not None
            evaluation = record.dagster_event.event_specific_data
            assert isinstance(evaluation, AssetCheckEvaluation)
            results[evaluation.check_name] = (evaluation.passed, evaluation.partition)
        return results
    finally:
        instance.dispose()


def _report(name: str, server: MisbehavingServer, drill: Drill) -> None:
    received = server.handler.per_recipient()
    states = {state: len(rows) for state, rows in _states(drill).items()}
    print(
        f"\n{name}: {EMAILS_OWED} owed, {sum(received.values())} received by "
        f"{len(received)} recipients (max {max(received.values(), default=0)} each), "
        f"ledger {states}"
    )


def test_late_final_reply_at_shipped_defaults_is_waited_for(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    """(a) The server stores message 1 and answers 250 only after 35 s. The reply after DATA
    gets 10 minutes by default (RFC 5321): one copy, `sent`, nothing failed."""
    with (
        MisbehavingServer(Faults(late_reply={1: 35.0})) as server,
        running(tmp_path, postgres_database, server, server.url()) as drill,
    ):
        run = drill.musicbutler("run", "--date", DAY)
        _report("late reply (35 s, defaults)", server, drill)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{EMAILS_OWED} email(s) sent" in run.stdout
        received = server.handler.per_recipient()
        assert len(received) == EMAILS_OWED and set(received.values()) == {1}
        assert set(_states(drill)) == {"sent"}


def test_reply_later_than_data_timeout_is_unknown_and_never_resent(
    tmp_path: Path, postgres_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(a') The reply to the end of DATA comes after the configured `data_timeout`: that
    subscriber is `unknown` (not retried, not failed), everyone else gets one copy, the run
    exits 1, a rerun sends nothing more, doctor and the day's check are red."""
    with (
        MisbehavingServer(Faults(late_reply={1: 8.0})) as server,
        running(tmp_path, postgres_database, server, server.url(data_timeout="3")) as drill,
    ):
        run = drill.musicbutler("run", "--date", DAY)
        _report("reply later than data_timeout=3", server, drill)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "1 outcome unknown" in run.stdout
        assert "NOT SENT: 1 email(s) with an unknown outcome" in run.stderr
        states = _states(drill)
        [limbo] = states["unknown"]
        assert len(states["sent"]) == EMAILS_OWED - 1 and set(states) == {"sent", "unknown"}
        [row] = [row for row in drill.ledger() if row.recipient == limbo]
        assert row.phase == "reply" and "no reply to the end of DATA" in (row.error or "")
        checks = _check_results(drill, _run_id(run.stdout), monkeypatch)
        assert checks["every_owed_email_sent"] == (False, DAY)

        rerun = drill.musicbutler("run", "--date", DAY)
        assert rerun.returncode == 1, rerun.stdout + rerun.stderr
        assert "0 email(s) sent" in rerun.stdout
        received = server.handler.per_recipient()
        assert len(received) == EMAILS_OWED and set(received.values()) == {1}

        doctor = drill.musicbutler("doctor")
        assert doctor.returncode == 1, doctor.stdout
        assert f"{DAY}: 1 email(s) with an unknown outcome" in doctor.stdout


def test_message_stored_then_connection_dropped_is_unknown(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    """(b) The server stores message 3 and hangs up without answering. Old code reconnected and
    sent it again; now it is `unknown`, reported, and the other 37 go out once each."""
    with (
        MisbehavingServer(Faults(drop_after_store={3})) as server,
        running(tmp_path, postgres_database, server, server.url()) as drill,
    ):
        run = drill.musicbutler("run", "--date", DAY)
        _report("stored then dropped (message 3)", server, drill)
        assert run.returncode == 1, run.stdout + run.stderr
        assert f"{EMAILS_OWED - 1} email(s) sent" in run.stdout
        assert "1 outcome unknown" in run.stdout
        received = server.handler.per_recipient()
        assert len(received) == EMAILS_OWED and set(received.values()) == {1}
        states = _states(drill)
        assert len(states["unknown"]) == 1 and len(states["sent"]) == EMAILS_OWED - 1
        # The operator hears of it, through the same server, at most once an hour.
        alerts = [
            message
            for message in server.handler.stored
            if str(message["Subject"]).strip().startswith("[MusicButler]")
        ]
        assert [str(m["To"]) for m in alerts] == [OPERATOR]
        assert "outcome unknown" in str(alerts[0]["Subject"])

        doctor = drill.musicbutler("doctor")
        assert doctor.returncode == 1 and f"{DAY}: 1 email(s) with an unknown outcome" in (
            doctor.stdout
        )
        reconcile = drill.musicbutler("sends", "reconcile", "--date", DAY, "--mark-sent")
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
        assert "1 claim(s) marked sent" in reconcile.stdout
        assert set(_states(drill)) == {"sent"}
        assert drill.musicbutler("doctor").returncode == 0


@pytest.mark.parametrize(
    ("name", "faults"),
    [
        ("dropped at RCPT (5th)", Faults(drop_at_rcpt={5})),
        ("421 at DATA (4th)", Faults(refuse_data={4})),
    ],
)
def test_faults_before_the_end_of_data_are_retried(
    tmp_path: Path, postgres_database: Callable[[], str], name: str, faults: Faults
) -> None:
    """(c), (d) Nothing can have been delivered before the end of DATA: retried at once, every
    subscriber gets exactly one copy, the run is clean."""
    with (
        MisbehavingServer(faults) as server,
        running(tmp_path, postgres_database, server, server.url()) as drill,
    ):
        run = drill.musicbutler("run", "--date", DAY)
        _report(name, server, drill)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{EMAILS_OWED} email(s) sent" in run.stdout
        received = server.handler.per_recipient()
        assert len(received) == EMAILS_OWED and set(received.values()) == {1}
        assert set(_states(drill)) == {"sent"}


@pytest.mark.parametrize(
    "backoff_seconds",
    [
        # The user settings shorten the backoff (2 s doubling to 10 s); the tick interval stays.
        # In `make drills` too (CI runs it after `make test`): a minute of real processes.
        pytest.param(2, id="short-backoff-setting", marks=pytest.mark.drills_matrix),
        # Shipped defaults: the retry is due 5 min after the failure, ticks every 60 s.
        pytest.param(
            None, id="shipped-defaults", marks=[pytest.mark.drills_matrix, pytest.mark.timeout(900)]
        ),
    ],
)
def test_refused_login_turns_red_then_the_retry_sensor_sends_each_once(
    tmp_path: Path,
    postgres_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    backoff_seconds: int | None,
) -> None:
    """(e) The server refuses our login: all 38 fail, the run exits 1, the day's check fails,
    doctor exits 1. The server is fixed; the retry sensor under a real dagster-daemon requests a
    run of the day, which sends each subscriber exactly once."""
    with (
        MisbehavingServer(Faults(), auth=True) as server,
        running(tmp_path, postgres_database, server, server.url()) as drill,
    ):
        if backoff_seconds is not None:
            drill.extra_env["MUSICBUTLER_RETRY_BACKOFF_SECONDS"] = str(backoff_seconds)
            drill.extra_env["MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS"] = str(5 * backoff_seconds)
        server.refuse_logins()
        run = drill.musicbutler("run", "--date", DAY)
        assert run.returncode == 1, run.stdout + run.stderr
        assert f"{EMAILS_OWED} failed" in run.stdout
        assert f"NOT SENT: {EMAILS_OWED} email(s) failed temporarily" in run.stderr
        assert set(_states(drill)) == {"failed"}
        checks = _check_results(drill, _run_id(run.stdout), monkeypatch)
        assert checks["every_owed_email_sent"] == (False, DAY)
        doctor = drill.musicbutler("doctor")
        assert doctor.returncode == 1, doctor.stdout
        assert f"{DAY}: owed email not sent: {EMAILS_OWED} failed temporarily" in doctor.stdout

        server.refuse_logins(False)
        daemon = drill.start("dagster-daemon", "run", "-m", "tests.drills.retry_definitions")
        try:
            wait_for(
                lambda: set(_states(drill)) == {"sent"},
                timeout=300 if backoff_seconds else 300 + 420,
                what="the retry sensor's run to send the day",
                interval=1,
            )
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
        _report("login refused, then fixed and retried by the sensor", server, drill)
        received = server.handler.per_recipient()
        assert len(received) == EMAILS_OWED and set(received.values()) == {1}, output(daemon)
        assert {row.attempts for row in drill.ledger()} == {2}
        assert drill.musicbutler("doctor").returncode == 0

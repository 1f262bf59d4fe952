"""The detection matrix (`make drills`): {SQLite instance, PostgreSQL instance} x {one host, two
hosts (UTS+PID namespaces with their own hostnames)}, two runs each, and the false-alarm cases.
Everything at the shipped defaults. `pytest -m drills_matrix -s` prints each run's delay and the
signal that fired first."""

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from musicbutler_pipeline.warehouse.schema import scheduler_presence
from tests.drills.environment import REPO, wait_for
from tests.drills.schedulers import (
    DETECTION_BOUND,
    QUIET_WATCH,
    SCHEDULER,
    Site,
    first_signals,
    make_site,
    operator_emails,
    wait_for_detection,
    wait_for_recovery,
    wait_until_serving,
    watch_quietly,
)

pytestmark = pytest.mark.drills_matrix

CELLS = [(storage, hosts) for storage in ("sqlite", "postgres") for hosts in ("one", "two")]


def _site(request: pytest.FixtureRequest, tmp_path: Path, storage: str) -> Site:
    database: Callable[[], str] | None = (
        request.getfixturevalue("postgres_database") if storage == "postgres" else None
    )
    sites = make_site(tmp_path, storage, database)
    site = next(sites)
    request.addfinalizer(lambda: next(sites, None))
    if site.instance_url:
        # The test reads the instance too (deploy/dagster.yaml names the variable).
        request.getfixturevalue("monkeypatch").setenv(
            "MUSICBUTLER_DAGSTER_POSTGRES_URL", site.instance_url
        )
    return site


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _presences(site: Site) -> list:
    engine = site.engine()
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(scheduler_presence)).all())
    finally:
        engine.dispose()


# Two runs a cell (three until CI neared its hour): eight detections at the defaults per CI run.
@pytest.mark.parametrize("run", [1, 2])
@pytest.mark.parametrize(("storage", "hosts"), CELLS)
def test_second_scheduler_is_reported_within_two_minutes(
    request: pytest.FixtureRequest, tmp_path: Path, storage: str, hosts: str, run: int
) -> None:
    site = _site(request, tmp_path, storage)
    site.extra_env["MUSICBUTLER_OPERATOR_EMAIL"] = "ops@example.org"
    apart = hosts == "two"
    first = site.start(*SCHEDULER, host="sched-old" if apart else None)
    wait_until_serving(site, time.time() - 1)
    started = datetime.now(UTC)
    second = site.start(*SCHEDULER, host="sched-new" if apart else None)
    names = (
        ("on sched-old", "on sched-new") if apart else (f"pid {first.pid} ", f"pid {second.pid} ")
    )
    doctor_host = "ops" if apart else None  # doctor from a third host

    detection = wait_for_detection(site, started, names, doctor_host)
    stopped = time.monotonic()
    site.stop(second)
    site.stop(first)
    recovery = wait_for_recovery(site, stopped, doctor_host)
    print(
        f"\nMATRIX {storage} {hosts}-host run {run}: doctor exit 1 after {detection.delay:.1f}s, "
        f"first signal {detection.first()} ("
        + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(detection.first_signals.items()))
        + f"); healthy {recovery:.1f}s after stop; operator e-mails {len(operator_emails(site))}"
    )
    assert len(operator_emails(site)) == 1


@pytest.mark.parametrize("hosts", ["one", "two"])
def test_restart_on_postgres_is_no_second_scheduler(
    request: pytest.FixtureRequest, tmp_path: Path, hosts: str
) -> None:
    site = _site(request, tmp_path, "postgres")
    host = "sched-a" if hosts == "two" else None
    first = site.start(*SCHEDULER, host=host)
    wait_until_serving(site, time.time() - 1)
    site.stop(first)
    restarted = time.time()
    site.start(*SCHEDULER, host=host)
    wait_until_serving(site, restarted)
    checks = watch_quietly(site, QUIET_WATCH, "ops" if host else None)
    print(f"\nFALSE-ALARM restart postgres {hosts}-host: {checks} doctor runs, no problem")
    assert not operator_emails(site)


def test_dagster_dev_alone_is_one_scheduler(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    site = _site(request, tmp_path, "sqlite")
    site.start("dagster", "dev", "-m", "musicbutler_pipeline.definitions", "-p", _free_port())
    wait_for(lambda: _presences(site), timeout=180, what="dagster dev's presence", interval=1)
    checks = watch_quietly(site, QUIET_WATCH)
    presences = _presences(site)
    print(f"\nFALSE-ALARM dagster dev alone: {checks} doctor runs, presences {len(presences)}")
    assert len(presences) == 1
    assert not operator_emails(site)


def test_webserver_beside_one_daemon_is_one_scheduler(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = _site(request, tmp_path, "postgres")
    port = _free_port()
    site.start("dagster-webserver", "-m", "musicbutler_pipeline.definitions", "-p", port)
    daemon = site.start(*SCHEDULER)
    wait_until_serving(site, time.time() - 1)
    checks = watch_quietly(site, QUIET_WATCH)
    presences = _presences(site)
    print(f"\nFALSE-ALARM webserver + one daemon: {checks} doctor runs, presences {len(presences)}")
    assert [row.daemon_pid for row in presences] == [daemon.pid]
    assert not operator_emails(site)


def test_dagster_dev_beside_musicbutler_daemon_is_reported(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = _site(request, tmp_path, "postgres")
    site.start("musicbutler", "-v", "daemon")
    wait_until_serving(site, time.time() - 1)
    started = datetime.now(UTC)
    dev = site.start("dagster", "dev", "-m", "musicbutler_pipeline.definitions", "-p", _free_port())
    detection = wait_for_detection(site, started, (f"pid {dev.pid} ",))
    print(
        f"\nMATRIX dagster dev beside musicbutler daemon (postgres): doctor exit 1 after "
        f"{detection.delay:.1f}s, first signal {detection.first()} ("
        + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(detection.first_signals.items()))
        + ")"
    )


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_daemon_without_our_code_beside_musicbutler_daemon_is_reported(
    request: pytest.FixtureRequest, tmp_path: Path, storage: str
) -> None:
    """The second daemon runs other code (an old deploy): no presence of its own, so only the
    heartbeat and Dagster's log line, read by `musicbutler daemon`, can see it."""
    site = _site(request, tmp_path, storage)
    site.extra_env["PYTHONPATH"] = str(REPO)  # tests.drills.foreign_definitions
    legitimate = site.start("musicbutler", "-v", "daemon")
    wait_until_serving(site, time.time() - 1)
    [ours] = wait_for(lambda: _presences(site), timeout=120, what="our presence", interval=1)
    started = datetime.now(UTC)
    site.start("dagster-daemon", "run", "-m", "tests.drills.foreign_definitions")
    detection = wait_for_detection(site, started, (f"pid {ours.daemon_pid} ", "without a presence"))
    print(
        f"\nMATRIX foreign-code daemon beside musicbutler daemon ({storage}): doctor exit 1 after "
        f"{detection.delay:.1f}s, first signal {detection.first()} ("
        + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(detection.first_signals.items()))
        + ")"
    )
    assert "presence" not in detection.first_signals
    # Dagster's own line, read by `musicbutler daemon`, is recorded too (at its next heartbeat).
    logged = wait_for(
        lambda: first_signals(site, started).get("daemon_log"),
        timeout=DETECTION_BOUND - (datetime.now(UTC) - started).total_seconds(),
        what="the daemon_log signal",
        interval=2,
    )
    print(f"daemon_log signal first seen {logged:.1f}s after the second daemon started")
    assert legitimate.poll() is None

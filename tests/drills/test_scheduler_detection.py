"""Drills: a forgotten second scheduler is seen at the shipped defaults (and a restart is not).

Both run in `make drills` (CI runs it after `make test`), beside the whole matrix
(tests/drills/test_scheduler_matrix.py): the detection takes about two minutes of real daemons,
the restart a 75 s quiet watch.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance

from musicbutler_pipeline.checks import single_scheduler
from tests.drills.environment import wait_for
from tests.drills.schedulers import (
    DETECTION_BOUND,
    QUIET_WATCH,
    SCHEDULER,
    Site,
    child_code_servers,
    make_site,
    operator_emails,
    wait_for_detection,
    wait_for_recovery,
    wait_until_serving,
    watch_quietly,
)

SINGLE_SCHEDULER = single_scheduler.check_key


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """Nothing configured but MUSICBUTLER_HOME and DAGSTER_HOME: SQLite everywhere."""
    yield from make_site(tmp_path, "sqlite", None)


def single_scheduler_failed(site: Site) -> bool:
    instance = DagsterInstance.from_config(str(site.dagster_home))
    try:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [SINGLE_SCHEDULER]
        ).get(SINGLE_SCHEDULER)
    finally:
        instance.dispose()
    return latest is not None and latest.status.value == "FAILED"


@pytest.mark.drills_matrix
def test_two_raw_daemons_at_defaults_are_reported_then_clear(site: Site) -> None:
    site.extra_env["MUSICBUTLER_OPERATOR_EMAIL"] = "ops@example.org"
    first = site.start(*SCHEDULER)
    wait_until_serving(site, time.time() - 1)
    started = datetime.now(UTC)
    second = site.start(*SCHEDULER)

    detection = wait_for_detection(site, started, (f"pid {first.pid} ", f"pid {second.pid} "))
    left = DETECTION_BOUND - (datetime.now(UTC) - started).total_seconds()
    wait_for(lambda: single_scheduler_failed(site), timeout=left, what="single_scheduler failing")
    wait_for(lambda: operator_emails(site), timeout=left, what="the operator's e-mail")
    checked = (datetime.now(UTC) - started).total_seconds()

    stopped = time.monotonic()
    site.stop(second)
    site.stop(first)
    recovery = wait_for_recovery(site, stopped)
    emails = operator_emails(site)
    print(
        f"\nsqlite same-host at defaults: doctor exit 1 after {detection.delay:.1f}s "
        f"(first signal {detection.first()}: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(detection.first_signals.items()))
        + f"); check failed and e-mail out by {checked:.1f}s; healthy {recovery:.1f}s after stop"
    )
    assert len(emails) == 1, [path.name for path in emails]
    assert "two schedulers are running" in emails[0].read_text()


@pytest.mark.drills_matrix
def test_daemon_restarted_within_seconds_and_code_server_reloads_raise_nothing(
    site: Site,
) -> None:
    site.extra_env["MUSICBUTLER_OPERATOR_EMAIL"] = "ops@example.org"
    first = site.start(*SCHEDULER)
    wait_until_serving(site, time.time() - 1)
    stopped_at = time.time()
    site.stop(first)
    restarted_at = time.time()
    again = site.start(*SCHEDULER)
    wait_until_serving(site, restarted_at)
    servers = wait_for(lambda: child_code_servers(again.pid), timeout=60, what="a code server")
    checks = watch_quietly(site, QUIET_WATCH)
    reloaded = child_code_servers(again.pid) - set(servers)  # the daemon reloads every 60 s
    print(
        f"\nrestart ({restarted_at - stopped_at:.1f}s to stop, started again at once) + code "
        f"server reload ({sorted(servers)} -> {sorted(reloaded)}): {checks} doctor runs, no problem"
    )
    assert reloaded, "the daemon did not reload its code server while watched"
    assert not operator_emails(site)

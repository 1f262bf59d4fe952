"""The retry sensor, tick by tick, at its shipped defaults (5 min backoff doubling to 1 h,
MUSICBUTLER_MAX_SEND_AGE_DAYS=2), on a real SQLite warehouse and an ephemeral instance."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from sqlalchemy import Engine

from musicbutler_pipeline.domain.sends import Sender
from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.sensors.retries import build_retry_sensor, retry_delay
from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.warehouse.ledger import SendLedger
from tests.builders import add_subscriber

TODAY = latest_partition_day()


def _tick(engine: Engine, instance: DagsterInstance, at: datetime) -> SensorResult | SkipReason:
    sensor = build_retry_sensor(clock=lambda: at)
    resources = {"warehouse": WarehouseResource(url=engine.url.render_as_string(False))}
    with build_sensor_context(instance=instance, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def _requests(result: SensorResult | SkipReason) -> list[RunRequest]:
    return list(result.run_requests or []) if isinstance(result, SensorResult) else []


def _fail(engine: Engine, email: str, *, day: date = TODAY, permanent: bool = False) -> int:
    """A subscriber whose send for ``day`` failed once more; returns their id."""
    ledger = SendLedger(engine, Sender("run", "host", 1, "v"))
    subscriber = add_subscriber(engine, email)
    claim = ledger.claim(day, subscriber, recipient=email, message_id="<m>", release_group_count=1)
    ledger.mark_failed(claim, "421 try later", permanent=permanent, phase="connect")
    return subscriber


def _fail_again(engine: Engine, subscriber: int, email: str, day: date = TODAY) -> None:
    ledger = SendLedger(engine, Sender("run-2", "host", 1, "v"))
    claim = ledger.claim(day, subscriber, recipient=email, message_id="<m>", release_group_count=1)
    ledger.mark_failed(claim, "421 still", permanent=False, phase="connect")


def test_backoff_doubles_to_a_cap() -> None:
    base, cap = timedelta(minutes=5), timedelta(hours=1)
    assert [retry_delay(n, base, cap) for n in (1, 2, 3, 4, 5)] == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=20),
        timedelta(minutes=40),
        timedelta(hours=1),
    ]


def test_quiet_without_failures(sqlite_engine: Engine) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _tick(sqlite_engine, instance, datetime.now(UTC))
    assert isinstance(result, SkipReason) and "no temporary send failures" in str(
        result.skip_message
    )


def test_a_temporary_failure_is_retried_after_backoff_once_per_round(
    sqlite_engine: Engine,
) -> None:
    ana = _fail(sqlite_engine, "ana@example.com")
    now = datetime.now(UTC)
    with DagsterInstance.ephemeral() as instance:
        early = _tick(sqlite_engine, instance, now + timedelta(minutes=4))
        assert isinstance(early, SkipReason) and "retry due" in str(early.skip_message)
        [request] = _requests(_tick(sqlite_engine, instance, now + timedelta(minutes=5, seconds=2)))
        assert request.partition_key == TODAY.isoformat()
        assert request.run_key == f"retry:{TODAY}:1"
        # The same failures seen again ask for the same run key: Dagster launches it once.
        [again] = _requests(_tick(sqlite_engine, instance, now + timedelta(minutes=6)))
        assert again.run_key == request.run_key

        _fail_again(sqlite_engine, ana, "ana@example.com")  # the retry failed too: 10 min now
        now = datetime.now(UTC)
        assert _requests(_tick(sqlite_engine, instance, now + timedelta(minutes=9))) == []
        [second] = _requests(_tick(sqlite_engine, instance, now + timedelta(minutes=10, seconds=2)))
        assert second.run_key == f"retry:{TODAY}:2"


def test_never_two_runs_of_a_partition(sqlite_engine: Engine) -> None:
    _fail(sqlite_engine, "ana@example.com")
    later = datetime.now(UTC) + timedelta(hours=1)
    with DagsterInstance.ephemeral() as instance:
        instance.add_run(
            DagsterRun(
                job_name=daily_drops_job.name,
                run_id=str(uuid.uuid4()),
                status=DagsterRunStatus.STARTED,
                tags={"dagster/partition": TODAY.isoformat()},
            )
        )
        result = _tick(sqlite_engine, instance, later)
    assert isinstance(result, SkipReason) and "after its current run" in str(result.skip_message)


def test_rejected_addresses_and_unknown_outcomes_are_not_retried(sqlite_engine: Engine) -> None:
    _fail(sqlite_engine, "gone@example.com", permanent=True)
    ledger = SendLedger(sqlite_engine, Sender("run", "host", 1, "v"))
    ben = add_subscriber(sqlite_engine, "ben@example.com")
    claim = ledger.claim(TODAY, ben, recipient="b", message_id="<m>", release_group_count=1)
    ledger.mark_unknown(claim, "no reply to the end of DATA", phase="reply")
    with DagsterInstance.ephemeral() as instance:
        assert _requests(_tick(sqlite_engine, instance, datetime.now(UTC) + timedelta(1))) == []


def test_never_past_the_stale_point(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    # Counted from the tick's own day: ten minutes on may already be tomorrow in UTC.
    three_days_ago = latest_partition_day(later) - timedelta(days=3)
    _fail(sqlite_engine, "ana@example.com", day=three_days_ago)
    with DagsterInstance.ephemeral() as instance:
        assert _requests(_tick(sqlite_engine, instance, later)) == []  # default: 2 days
        monkeypatch.setenv("MUSICBUTLER_MAX_SEND_AGE_DAYS", "3")
        [request] = _requests(_tick(sqlite_engine, instance, later))
    assert request.partition_key == three_days_ago.isoformat()


def test_the_backoff_is_a_setting_read_at_each_tick(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(sqlite_engine, "ana@example.com")
    now = datetime.now(UTC)
    with DagsterInstance.ephemeral() as instance:
        assert _requests(_tick(sqlite_engine, instance, now + timedelta(seconds=30))) == []
        monkeypatch.setenv("MUSICBUTLER_RETRY_BACKOFF_SECONDS", "20")
        [request] = _requests(_tick(sqlite_engine, instance, now + timedelta(seconds=30)))
    assert request.run_key == f"retry:{TODAY}:1"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("MUSICBUTLER_RETRY_BACKOFF_SECONDS", "0", "must be between 1 and 86400, got '0'"),
        ("MUSICBUTLER_RETRY_BACKOFF_SECONDS", "5m", "'5m' is not a whole number"),
        ("MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS", "10", "must be between 300 and 86400, got '10'"),
        ("MUSICBUTLER_SEND_DEADLINE_HOURS", "-1", "must be between 0 and 720, got '-1'"),
        ("MUSICBUTLER_SEND_DEADLINE_HOURS", "soon", "'soon' is not a whole number"),
    ],
)
def test_bad_retry_and_deadline_settings_are_one_line(
    variable: str, value: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value) == f"{variable}: {problem}"


def test_retry_and_deadline_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.retry_backoff_seconds, settings.retry_max_backoff_seconds) == (300, 3600)
    assert settings.send_deadline_hours == 6
    short = Settings.from_env({"MUSICBUTLER_RETRY_BACKOFF_SECONDS": "2"})
    assert (short.retry_backoff_seconds, short.retry_max_backoff_seconds) == (2, 3600)

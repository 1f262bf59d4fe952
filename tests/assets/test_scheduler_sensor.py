"""The duplicate-scheduler sensor, driven tick by tick."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster._daemon.types import DaemonHeartbeat
from sqlalchemy import Engine, func, insert, select

from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.sensors.schedulers import build_duplicate_scheduler_sensor
from musicbutler_pipeline.warehouse.schema import operator_alerts, scheduler_presence


@pytest.fixture
def sensor_resources(sqlite_engine: Engine, tmp_path):
    return {
        "warehouse": WarehouseResource(url=str(sqlite_engine.url)),
        "mailer": MailerResource(url=(tmp_path / "outbox").as_uri()),
    }


def _tick(instance: DagsterInstance, resources: dict, cursor: str | None):
    sensor = build_duplicate_scheduler_sensor(minimum_interval_seconds=5)
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def _beat(instance: DagsterInstance, daemon_id: str) -> None:
    instance.add_daemon_heartbeat(
        DaemonHeartbeat(datetime.now(UTC).timestamp(), "SCHEDULER", daemon_id, errors=[])
    )


def test_one_scheduler_stays_quiet(sensor_resources: dict, tmp_path) -> None:
    with DagsterInstance.ephemeral() as instance:
        cursor = None
        for _ in range(3):
            _beat(instance, "daemon-a")
            result = _tick(instance, sensor_resources, cursor)
            cursor = result.cursor
            assert result.asset_events == []
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_alternating_heartbeat_alerts_once_and_recovers(
    sensor_resources: dict, sqlite_engine: Engine, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MUSICBUTLER_OPERATOR_EMAIL", "ops@example.org")
    with DagsterInstance.ephemeral() as instance:
        cursor = None
        evaluations = []
        for owner in ("daemon-a", "daemon-b", "daemon-a", "daemon-b"):
            _beat(instance, owner)
            result = _tick(instance, sensor_resources, cursor)
            cursor = result.cursor
            evaluations.append([event.passed for event in result.asset_events])
        assert evaluations == [[], [], [False], [False]]  # alerts on the third tick: A, B, A
        assert json.loads(cursor)["failing"] is True
        emails = list((tmp_path / "outbox").glob("*.eml"))
        assert len(emails) == 1  # at most once an hour, however many ticks see it
        assert "two schedulers are running" in emails[0].read_text()
        with sqlite_engine.connect() as connection:
            assert (
                connection.execute(select(func.count()).select_from(operator_alerts)).scalar() == 1
            )

        # The extra daemon is stopped: fresh state, one owner again.
        result = _tick(
            instance, sensor_resources, json.dumps({"heartbeat_owners": [], "failing": True})
        )
        assert [event.passed for event in result.asset_events] == [True]


def test_overlapping_daemon_processes_alert(sensor_resources: dict, sqlite_engine: Engine) -> None:
    now = datetime.now(UTC)
    with sqlite_engine.begin() as connection:
        connection.execute(
            insert(scheduler_presence),
            [
                {
                    "host": "other",
                    "daemon_pid": 10,
                    "first_seen": now - timedelta(seconds=50),
                    "last_seen": now - timedelta(seconds=1),
                    "code_version": "old",
                },
                {
                    "host": "other",
                    "daemon_pid": 11,
                    "first_seen": now - timedelta(seconds=40),
                    "last_seen": now - timedelta(seconds=2),
                    "code_version": "new",
                },
            ],
        )
    with DagsterInstance.ephemeral() as instance:
        result = _tick(instance, sensor_resources, None)
    [evaluation] = result.asset_events
    assert not evaluation.passed
    assert "pid 10 on other (code old" in evaluation.metadata["finding"].value

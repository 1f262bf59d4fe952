"""The operator is e-mailed about a failed run (once per run) and about a day whose owed emails
are not all sent by its deadline (once per day): sensors driven tick by tick, mail to the file
outbox, on a real SQLite warehouse and an ephemeral Dagster instance."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
)
from sqlalchemy import Engine

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.sensors import daily_drops_failure_sensor
from musicbutler_pipeline.sensors.deadlines import build_send_deadline_sensor
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from tests.builders import add_subscriber, follow, release_group, store_releases

OPERATOR = "ops@example.org"


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MUSICBUTLER_OPERATOR_EMAIL", OPERATOR)
    return tmp_path / "outbox"


def _resources(engine: Engine, outbox: Path) -> dict:
    return {
        "warehouse": WarehouseResource(url=engine.url.render_as_string(hide_password=False)),
        "mailer": MailerResource(url=outbox.as_uri(), mail_from="Butler <butler@example.org>"),
    }


def _mail(outbox: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]


def test_a_failed_run_emails_the_operator_once(sqlite_engine: Engine, outbox: Path) -> None:
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    resources = _resources(sqlite_engine, outbox)
    definitions = build_definitions(
        release_source=SnapshotReleaseSource(), library_source=CsvOnlyLibrarySource(), **resources
    )
    with DagsterInstance.ephemeral() as instance:
        # A real failure: the sample day is older than MUSICBUTLER_MAX_SEND_AGE_DAYS.
        result = definitions.resolve_job_def("daily_drops_job").execute_in_process(
            partition_key=SAMPLE_DAY.isoformat(), instance=instance, raise_on_error=False
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        [failure] = instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_FAILURE)
        assert failure.dagster_event is not None

        def tick() -> None:
            with build_run_status_sensor_context(
                sensor_name=daily_drops_failure_sensor.name,
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
                resources=resources,
            ) as context:
                daily_drops_failure_sensor(context.for_run_failure())

        tick()
        tick()  # a second daemon, or the same failure seen again: no second e-mail
    [message] = _mail(outbox)
    assert message["To"] == OPERATOR
    assert message["Subject"] == f"[MusicButler] {SAMPLE_DAY}: the daily run failed"
    body = message.get_content()
    assert f"daily_drops_job run {result.run_id} failed: drop_notifications: refused: " in body
    assert "older than MUSICBUTLER_MAX_SEND_AGE_DAYS=2" in body


def _owed_unsent(engine: Engine, day: date, email: str) -> None:
    """A subscriber with a drop on ``day`` and no send: owed, never attempted."""
    subscriber = add_subscriber(engine, email)
    follow(engine, subscriber, f"artist of {email}")
    store_releases(
        engine, day, release_group(f"album for {email}", f"artist of {email}", released=str(day))
    )
    with engine.begin() as connection:
        replace_drops(connection, day)


def _deadline_tick(engine: Engine, outbox: Path, at: datetime) -> SkipReason:
    sensor = build_send_deadline_sensor(clock=lambda: at)
    with (
        DagsterInstance.ephemeral() as instance,
        build_sensor_context(instance=instance, resources=_resources(engine, outbox)) as context,
    ):
        result = sensor(context)
    assert isinstance(result, SkipReason)
    return result


def test_a_day_not_sent_by_its_deadline_emails_the_operator_once(
    sqlite_engine: Engine, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yesterday = latest_partition_day() - timedelta(days=1)
    _owed_unsent(sqlite_engine, yesterday, "late@example.org")
    # The shipped deadline: 6 hours after the day ends.
    day_end = datetime.combine(yesterday + timedelta(days=1), time(), tzinfo=UTC)
    early = _deadline_tick(sqlite_engine, outbox, day_end + timedelta(hours=5, minutes=59))
    assert "is sent" in str(early.skip_message)
    assert _mail(outbox) == []

    late = _deadline_tick(sqlite_engine, outbox, day_end + timedelta(hours=6))
    assert str(late.skip_message) == (
        f"past the send deadline with owed emails unsent: {yesterday}"
    )
    _deadline_tick(sqlite_engine, outbox, day_end + timedelta(hours=7))  # told already
    [message] = _mail(outbox)
    assert message["To"] == OPERATOR
    assert message["Subject"] == (
        f"[MusicButler] {yesterday}: owed emails not all sent by the deadline"
    )
    assert f"by {day_end + timedelta(hours=6):%Y-%m-%d %H:%M} UTC" in message.get_content()
    assert "1 never attempted" in message.get_content()

    # Another day is its own alert; the deadline is a setting read at each tick. The day after
    # `yesterday`, not the clock's today again: midnight UTC may have passed since.
    today = yesterday + timedelta(days=1)
    _owed_unsent(sqlite_engine, today, "today@example.org")
    monkeypatch.setenv("MUSICBUTLER_SEND_DEADLINE_HOURS", "0")
    tomorrow = day_end + timedelta(days=1)
    _deadline_tick(sqlite_engine, outbox, tomorrow)
    assert [m["Subject"].split(":")[0] for m in _mail(outbox)] == sorted(
        [f"[MusicButler] {yesterday}", f"[MusicButler] {today}"]
    )


def test_a_day_no_run_sent_emails_the_operator_once_its_deadline_passes(
    sqlite_engine: Engine, outbox: Path
) -> None:
    """No drops, no ledger rows: the scheduler never ran the day. Only Dagster's records say so."""
    today = latest_partition_day()
    two_days_ago, yesterday = today - timedelta(days=2), today - timedelta(days=1)
    day_end = datetime.combine(today, time(), tzinfo=UTC)  # yesterday's end
    sensor = build_send_deadline_sensor(clock=lambda: clock_at[0])
    clock_at = [day_end - timedelta(days=2)]  # the sensor's first tick: as two days ago began
    with DagsterInstance.ephemeral() as instance:
        # Two days ago was sent (with nothing to send, or not: it is materialized); yesterday not.
        instance.report_runless_asset_event(
            AssetMaterialization("drop_notifications", partition=two_days_ago.isoformat())
        )

        def tick(cursor: str | None) -> tuple[str, str | None]:
            with build_sensor_context(
                instance=instance, resources=_resources(sqlite_engine, outbox), cursor=cursor
            ) as context:
                result = sensor(context)
                assert isinstance(result, SkipReason)
                return str(result.skip_message), context.cursor

        _, cursor = tick(None)
        assert cursor == two_days_ago.isoformat()  # watching from the day of its first tick
        clock_at[0] = day_end + timedelta(hours=5, minutes=59)
        assert "is sent" in tick(cursor)[0]
        assert _mail(outbox) == []

        clock_at[0] = day_end + timedelta(hours=6)
        assert tick(cursor)[0] == f"past the send deadline with owed emails unsent: {yesterday}"
        tick(cursor)  # told already
        [message] = _mail(outbox)
        assert (
            message["Subject"]
            == f"[MusicButler] {yesterday}: the day was never sent by the deadline"
        )
        assert f"musicbutler run --date {yesterday}" in message.get_content()

        # A new installation is not told about the days before its sensor first ticked.
        assert tick(None)[0].startswith("every day from")
        assert len(_mail(outbox)) == 1


def test_a_deadline_past_the_max_send_age_still_emails_the_operator(
    sqlite_engine: Engine, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MUSICBUTLER_SEND_DEADLINE_HOURS may be up to 720: a deadline four days after the day ends
    is past MUSICBUTLER_MAX_SEND_AGE_DAYS=2, and the day is still looked at when it passes."""
    monkeypatch.setenv("MUSICBUTLER_SEND_DEADLINE_HOURS", "96")
    day = date(2026, 11, 23)
    _owed_unsent(sqlite_engine, day, "late@example.org")
    deadline = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) + timedelta(hours=96)
    early = _deadline_tick(sqlite_engine, outbox, deadline - timedelta(seconds=1))
    assert "is sent" in str(early.skip_message)
    late = _deadline_tick(sqlite_engine, outbox, deadline)
    assert str(late.skip_message) == f"past the send deadline with owed emails unsent: {day}"
    # Looked at for MUSICBUTLER_MAX_SEND_AGE_DAYS + 1 days after its deadline, told once.
    still = _deadline_tick(sqlite_engine, outbox, deadline + timedelta(days=3, seconds=-1))
    assert str(still.skip_message) == str(late.skip_message)
    gone = _deadline_tick(sqlite_engine, outbox, deadline + timedelta(days=3))
    assert str(gone.skip_message).startswith("every day from 2026-11-24 ")
    [message] = _mail(outbox)
    assert message["Subject"] == f"[MusicButler] {day}: owed emails not all sent by the deadline"

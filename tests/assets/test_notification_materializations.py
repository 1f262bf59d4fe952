"""drop_notifications materializes once per partition: reruns that send nothing record an
observation; a retry that sends records a new materialization. Days older than
MUSICBUTLER_MAX_SEND_AGE_DAYS are refused unless the run allows them; a backfill over days
already sent e-mails nobody again."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    MarkdownMetadataValue,
    RunsFilter,
    TableSchema,
    materialize,
)
from sqlalchemy import Engine

from musicbutler_pipeline.assets import daily_assets, drop_notifications, user_drops
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from tests.builders import add_subscriber, follow, release_group, store_releases
from tests.clock import pin_today

pytest_plugins = ["tests.fixtures.smtp"]

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
NOTIFICATIONS = AssetKey("drop_notifications")
ALLOW_OLD = {ALLOW_OLD_SEND_TAG: "true"}


@pytest.fixture
def sample_warehouse(sqlite_engine: Engine) -> Engine:
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    return sqlite_engine


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _sample_run(engine: Engine, mail_url: str, instance: DagsterInstance, tags=ALLOW_OLD):
    return materialize(
        [*daily_assets, *daily_checks],
        partition_key=SAMPLE_DAY.isoformat(),
        instance=instance,
        tags=tags,
        resources={
            "warehouse": WarehouseResource(url=_url(engine)),
            "release_source": SnapshotReleaseSource(),
            "mailer": MailerResource(url=mail_url, mail_from="Butler <butler@example.org>"),
            "library_source": CsvOnlyLibrarySource(),
        },
        raise_on_error=False,
    )


def _materializations(instance: DagsterInstance, partition: str) -> list[dict]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=NOTIFICATIONS, asset_partitions=[partition]), limit=100
    ).records
    return [
        {key: value.value for key, value in record.asset_materialization.metadata.items()}
        for record in records
        if record.asset_materialization is not None
    ]


def _observations(result) -> list[dict]:
    return [
        {key: value.value for key, value in event.metadata.items()}
        for event in result.asset_observations_for_node(drop_notifications.op.name)
    ]


def test_rerun_observes_and_keeps_the_materialization(
    sample_warehouse: Engine, tmp_path: Path
) -> None:
    outbox = (tmp_path / "outbox").as_uri()
    partition = SAMPLE_DAY.isoformat()
    with DagsterInstance.ephemeral() as instance:
        first = _sample_run(sample_warehouse, outbox, instance)
        assert first.success
        assert [m["sent"] for m in _materializations(instance, partition)] == [38]
        assert _observations(first) == []
        # Every asset's materialization carries its column schema, a row count and a preview.
        for event in first.get_asset_materialization_events():
            metadata = event.materialization.metadata
            assert isinstance(metadata["dagster/column_schema"].value, TableSchema), event
            assert metadata["dagster/row_count"].value > 0, event
            assert any(isinstance(v, MarkdownMetadataValue) for v in metadata.values()), event
        assert len(first.get_asset_materialization_events()) == 5

        rerun = _sample_run(sample_warehouse, outbox, instance)
        assert rerun.success
        # The partition's latest materialization still says what was sent.
        assert [m["sent"] for m in _materializations(instance, partition)] == [38]
        assert rerun.asset_materializations_for_node(drop_notifications.op.name) == []
        [observed] = _observations(rerun)
        assert (observed["sent"], observed["skipped_already_sent"]) == (0, 38)
        assert observed["ledger_sent_total"] == 38
        # Without a materialization Dagster skips the check steps; the asset evaluates the
        # checks the run planned, so the partition's checks say what the rerun saw.
        for check in daily_checks:
            [latest, *_] = instance.event_log_storage.get_asset_check_execution_history(
                check.check_key, limit=1
            )
            assert (latest.run_id, latest.status.value) == (rerun.run_id, "SUCCEEDED"), check
        owed = [
            e
            for e in rerun.get_asset_check_evaluations()
            if e.check_name == "every_owed_email_sent"
        ]
        assert [(e.passed, e.partition) for e in owed] == [(True, partition)]


def test_retry_after_a_temporary_failure_materializes_what_it_sent(
    sample_warehouse: Engine, smtp_server
) -> None:
    grey = sorted(EXPECTED["digest_release_groups"])[0]
    server = smtp_server(refuse={grey: ["451 4.7.1 try again later"]})
    url = server.url(retries="0")
    partition = SAMPLE_DAY.isoformat()
    with DagsterInstance.ephemeral() as instance:
        first = _sample_run(sample_warehouse, url, instance)
        [sent_first] = _materializations(instance, partition)
        assert (sent_first["sent"], sent_first["failed"]) == (37, 1)

        retry = _sample_run(sample_warehouse, url, instance)
        assert first.success and retry.success
        latest, earlier = _materializations(instance, partition)
        assert (latest["sent"], latest["failed"], latest["skipped_already_sent"]) == (1, 0, 37)
        assert earlier == sent_first
        assert _observations(retry) == []
    assert len(server.handler.messages_to(grey)) == 1


def test_a_day_older_than_the_max_send_age_is_refused_unless_allowed(
    sample_warehouse: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    today = latest_partition_day()
    pin_today(monkeypatch, today)  # the asset reads today itself
    age = (today - SAMPLE_DAY).days
    assert age > 2  # the sample day is in the past; the default max age is 2 days
    with DagsterInstance.ephemeral() as instance:
        refused = _sample_run(sample_warehouse, outbox.as_uri(), instance, tags={})
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.is_step_failure]
        assert failure.step_key == "drop_notifications"
        message = failure.step_failure_data.user_failure_data.description
        assert message == (
            f"refused: {SAMPLE_DAY} is {age} days old, older than MUSICBUTLER_MAX_SEND_AGE_DAYS=2;"
            f" nothing was sent (to send anyway: `musicbutler run --date {SAMPLE_DAY} "
            f"--allow-old`, or the run tag {ALLOW_OLD_SEND_TAG}=true)"
        )
        assert "\n" not in message
        assert failure.step_failure_data.user_failure_data.metadata["refused"].value == (
            "older than 2 days"
        )
        assert not outbox.exists() or not list(outbox.iterdir())
        # The partition's check says what is owed, not "skipped".
        [owed] = [
            e
            for e in refused.get_asset_check_evaluations()
            if e.check_name == "every_owed_email_sent"
        ]
        assert (owed.passed, owed.partition) == (False, SAMPLE_DAY.isoformat())
        assert owed.metadata["never_attempted"].value == 38

        allowed = _sample_run(sample_warehouse, outbox.as_uri(), instance)
        assert allowed.success
        assert len(list(outbox.glob("*.eml"))) == 38


def test_the_max_send_age_is_a_setting(
    sample_warehouse: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = latest_partition_day()
    pin_today(monkeypatch, today)  # the asset reads today itself
    monkeypatch.setenv("MUSICBUTLER_MAX_SEND_AGE_DAYS", str((today - SAMPLE_DAY).days))
    outbox = tmp_path / "outbox"
    with DagsterInstance.ephemeral() as instance:
        assert _sample_run(sample_warehouse, outbox.as_uri(), instance, tags={}).success
    assert len(list(outbox.glob("*.eml"))) == 38


def test_a_backfill_over_sent_days_emails_nobody_again(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Three past partitions; the first two were sent before the backfill, the third was not."""
    days = [SAMPLE_DAY - timedelta(days=n) for n in (2, 1, 0)]
    for number, day in enumerate(days):
        subscriber = add_subscriber(sqlite_engine, f"fan{number}@example.org")
        follow(sqlite_engine, subscriber, f"artist {number}")
        follow(
            sqlite_engine,
            add_subscriber(sqlite_engine, f"also{number}@example.org"),
            f"artist {number}",
        )
        store_releases(
            sqlite_engine,
            day,
            release_group(f"album {number}", f"artist {number}", released=day.isoformat()),
        )
    outbox = tmp_path / "outbox"

    def run(day: date, instance: DagsterInstance):
        result = materialize(
            [user_drops, drop_notifications],
            partition_key=day.isoformat(),
            instance=instance,
            tags=ALLOW_OLD,
            resources={
                "warehouse": WarehouseResource(url=_url(sqlite_engine)),
                "mailer": MailerResource(url=outbox.as_uri(), mail_from="B <b@example.org>"),
            },
        )
        assert result.success
        return result

    with DagsterInstance.ephemeral() as instance:
        for day in days[:2]:
            run(day, instance)
        before = sorted(path.read_bytes() for path in outbox.glob("*.eml"))
        assert len(before) == 4
        backfill = [run(day, instance) for day in days]
        after = sorted(path.read_bytes() for path in outbox.glob("*.eml"))
        assert len(after) == 6
        assert set(before) <= set(after)  # the two sent days: no email again
        sent_by_backfill = [
            [
                m.metadata["sent"].value
                for m in r.asset_materializations_for_node("drop_notifications")
            ]
            for r in backfill
        ]
        assert sent_by_backfill == [[], [], [2]]
        assert [_observations(r)[0]["skipped_already_sent"] for r in backfill[:2]] == [2, 2]
        for day in days:
            assert len(_materializations(instance, day.isoformat())) == 1
        assert len(instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))) == 5

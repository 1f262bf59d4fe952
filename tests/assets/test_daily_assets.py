"""The five assets materialized with dagster.materialize on a temporary SQLite warehouse."""

import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from sqlalchemy import Engine, func, select, text

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.schema import announcements, release_groups, sends, subscribers
from musicbutler_pipeline.warehouse.subscribers import unsubscribe

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())


@pytest.fixture
def sample_warehouse(engine: Engine) -> Engine:
    """The bundled sample imported into a warehouse on SQLite, then on PostgreSQL."""
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    return engine


def _materialize(engine: Engine, outbox: Path, instance: DagsterInstance):
    return materialize(
        [*daily_assets, *daily_checks],
        partition_key=SAMPLE_DAY.isoformat(),
        instance=instance,
        tags={ALLOW_OLD_SEND_TAG: "true"},  # the sample day is in the past
        resources={
            "warehouse": WarehouseResource(url=engine.url.render_as_string(hide_password=False)),
            "release_source": SnapshotReleaseSource(),
            "mailer": MailerResource(url=outbox.as_uri(), mail_from="Butler <butler@example.org>"),
            "library_source": CsvOnlyLibrarySource(),
        },
    )


def _outbox(outbox: Path) -> list[EmailMessage]:
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox.glob("*.eml")]


def _metadata(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def test_sample_day_sends_exactly_the_expected_digests(
    sample_warehouse: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(sample_warehouse, outbox, instance)
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())

    releases = _metadata(result, "artist_releases")
    assert releases["records_seen"] == EXPECTED["total_records"]
    assert releases["records_skipped_malformed"] == EXPECTED["malformed_records"] == 3
    assert releases["release_groups"] == len(EXPECTED["exact_date_release_groups"])
    assert _metadata(result, "user_libraries")["subscribers_with_follows"] == 40
    notifications = _metadata(result, "drop_notifications")
    assert notifications["sent"] == EXPECTED["emails_expected"] == 38
    assert notifications["failed"] == 0

    messages = _outbox(outbox)
    by_recipient = {m["To"].addresses[0].addr_spec: m for m in messages}
    assert set(by_recipient) == set(EXPECTED["digest_release_groups"])
    assert not set(by_recipient) & set(EXPECTED["subscribers_without_drops"])
    for recipient, message in by_recipient.items():
        assert message["Subject"] == "New Music for November 23, 2026"
        html = message.get_body(("html",)).get_content()
        linked = {rg for rg in EXPECTED["pool_release_groups_on_day"] if rg in html}
        assert linked == set(EXPECTED["digest_release_groups"][recipient]), recipient
    assert len({m["Message-ID"] for m in messages}) == len(messages)
    if sample_warehouse.dialect.name == "postgresql":
        # user_drops refreshes the planner's statistics for the day it just wrote.
        with sample_warehouse.connect() as connection:
            analyzed = connection.execute(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'drops'")
            ).scalar_one()
        assert analyzed is not None


def test_rerun_sends_nothing_and_unsubscribed_get_nothing(
    sample_warehouse: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    first_recipient = sorted(EXPECTED["digest_release_groups"])[0]
    with sample_warehouse.begin() as connection:
        subscriber_id = connection.execute(
            select(subscribers.c.id).where(subscribers.c.email == first_recipient)
        ).scalar_one()
        unsubscribe(connection, subscriber_id)
    with DagsterInstance.ephemeral() as instance:
        first = _materialize(sample_warehouse, outbox, instance)
        second = _materialize(sample_warehouse, outbox, instance)
    assert _metadata(first, "drop_notifications")["sent"] == 37
    # A rerun that sends nothing records an observation, not a second materialization.
    assert second.asset_materializations_for_node("drop_notifications") == []
    [observation] = second.asset_observations_for_node("drop_notifications")
    again = {key: value.value for key, value in observation.metadata.items()}
    assert (again["sent"], again["skipped_already_sent"]) == (0, 37)
    assert len(list(outbox.glob("*.eml"))) == 37
    assert first_recipient not in {m["To"].addresses[0].addr_spec for m in _outbox(outbox)}
    with sample_warehouse.connect() as connection:
        assert connection.execute(select(func.count()).select_from(sends)).scalar() == 37
        announced = connection.execute(select(func.count()).select_from(announcements)).scalar()
        stored = connection.execute(select(func.count()).select_from(release_groups)).scalar()
    assert announced == sum(
        len(v) for k, v in EXPECTED["digest_release_groups"].items() if k != first_recipient
    )
    assert stored == len(EXPECTED["exact_date_release_groups"])  # replaced, not duplicated


def test_missing_schema_fails_with_the_command_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [daily_assets[0]],
            partition_key="2026-11-23",
            instance=instance,
            resources={
                "warehouse": WarehouseResource(url=url),
                "library_source": CsvOnlyLibrarySource(),
            },
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "musicbutler db upgrade" in str(failure.step_failure_data.error)
    assert AssetKey("user_libraries") not in {
        m.asset_key for m in result.get_asset_materialization_events()
    }

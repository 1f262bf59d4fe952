"""MUSICBUTLER_SEND_SHARDS > 1: drop_notifications as plan -> one step per shard -> collect. Each
owed email goes out exactly once, the partition's one materialization sums the shards, a re-run
records an observation; the definitions pick the shape and executor from the environment."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, GraphDefinition, materialize
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.assets import daily_assets, drop_notifications
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.assets.shards import merge_reports, sharded_drop_notifications
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.locks import send_lock
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.services.notifier import NotifyReport
from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.schema import sends

pytest_plugins = ["tests.fixtures.smtp"]

NOTIFICATIONS = AssetKey("drop_notifications")
SHARDED_ASSETS = [
    sharded_drop_notifications if asset is drop_notifications else asset for asset in daily_assets
]


@pytest.fixture
def sample_warehouse(sqlite_engine: Engine) -> Engine:
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    return sqlite_engine


def _run(engine: Engine, mail_url: str, instance: DagsterInstance):
    return materialize(
        [*SHARDED_ASSETS, *daily_checks],
        partition_key=SAMPLE_DAY.isoformat(),
        instance=instance,
        tags={ALLOW_OLD_SEND_TAG: "true"},
        resources={
            "warehouse": WarehouseResource(url=engine.url.render_as_string(hide_password=False)),
            "release_source": SnapshotReleaseSource(),
            "mailer": MailerResource(url=mail_url, mail_from="Butler <butler@example.org>"),
            "library_source": CsvOnlyLibrarySource(),
        },
        raise_on_error=False,
    )


def test_three_shards_send_each_owed_email_once_and_sum_into_one_materialization(
    sample_warehouse: Engine, smtp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSICBUTLER_SEND_SHARDS", "3")
    server = smtp_server()
    partition = SAMPLE_DAY.isoformat()
    with DagsterInstance.ephemeral() as instance:
        first = _run(sample_warehouse, server.url(), instance)
        assert first.success
        shard_steps = sorted(
            event.step_key
            for event in first.get_step_success_events()
            if event.step_key and ".send_shard[" in event.step_key
        )
        assert shard_steps == [f"drop_notifications.send_shard[shard_{i}of3]" for i in range(3)]
        per_shard = [first.output_for_node("drop_notifications.send_shard", "result")]
        assert per_shard  # the dynamic outputs, one report per shard
        reports = per_shard[0]
        assert sorted(reports) == [f"shard_{i}of3" for i in range(3)]
        assert all(report.sent > 0 for report in reports.values())

        recipients = Counter(rcpt for m in server.handler.received for rcpt in m.rcpt_tos)
        assert len(recipients) == 38
        assert set(recipients.values()) == {1}
        with sample_warehouse.connect() as connection:
            ledger_sent = connection.scalar(
                select(func.count()).where(sends.c.partition_date == SAMPLE_DAY)
            )
        assert ledger_sent == 38

        [record] = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=NOTIFICATIONS, asset_partitions=[partition]), limit=10
        ).records
        assert record.asset_materialization is not None
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert metadata["sent"] == sum(r.sent for r in reports.values()) == 38
        assert metadata["ledger_sent_total"] == 38
        assert metadata["owed_not_sent_total"] == 0

        rerun = _run(sample_warehouse, server.url(), instance)
        assert rerun.success
        assert len(server.handler.received) == 38  # nothing twice
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=NOTIFICATIONS, asset_partitions=[partition]), limit=10
        ).records
        assert len(records) == 1  # the partition's materialization still says what was sent
        [observed] = [
            {k: v.value for k, v in event.metadata.items()}
            for event in rerun.asset_observations_for_node("drop_notifications")
        ]
        assert (observed["sent"], observed["skipped_already_sent"]) == (0, 38)


def test_the_graph_has_the_one_step_assets_key_deps_and_description() -> None:
    [one_step] = drop_notifications.specs
    [sharded] = sharded_drop_notifications.specs
    assert sharded.key == one_step.key
    assert {dep.asset_key for dep in sharded.deps} == {dep.asset_key for dep in one_step.deps}
    assert (sharded.description, sharded.code_version) == (
        one_step.description,
        one_step.code_version,
    )
    assert sharded.partitions_def == one_step.partitions_def


def test_merge_reports_sums_counts_and_names_locked_shards() -> None:
    day = date(2026, 11, 23)
    a = NotifyReport(day, sent=2, already_sent=1, failures=[("a@x", "boom")])
    b = NotifyReport(day, sent=3, failed=1, failed_permanently=1, locked_by="pid 9 on h")
    total = merge_reports(day, [a, b])
    assert (total.sent, total.already_sent, total.failed, total.failed_permanently) == (5, 1, 1, 1)
    assert total.failures == [("a@x", "boom")]
    assert total.locked_by == "pid 9 on h"
    assert merge_reports(day, [a]).locked_by is None


def test_shard_values_are_checked() -> None:
    assert [s.key for s in Shard.all(3)] == ["0of3", "1of3", "2of3"]
    with pytest.raises(ValueError, match="index 3"):
        Shard(3, 3)
    with pytest.raises(ValueError, match="count"):
        Shard(0, 0)


def test_the_send_lock_is_per_day_and_shard(sqlite_url: str) -> None:
    day = date(2026, 11, 23)
    first, again = send_lock(sqlite_url, day, Shard(0, 2)), send_lock(sqlite_url, day, Shard(0, 2))
    other = send_lock(sqlite_url, day, Shard(1, 2))
    try:
        assert first.try_acquire()
        assert not again.try_acquire()  # two senders of one shard: no
        assert other.try_acquire()  # the day's other shard: in parallel
    finally:
        first.release()
        other.release()
    # The whole day keeps the day's lock, as before shards.
    assert send_lock(sqlite_url, day, Shard(0, 1)).name == send_lock(sqlite_url, day).name


def test_definitions_pick_the_shape_and_executor_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = build_definitions().resolve_job_def("daily_drops_job")
    assert default.executor_def.name == "multiprocess"
    assert "drop_notifications" in default.graph.node_dict
    assert default.graph.node_dict["drop_notifications"].definition.name == "drop_notifications"
    assert not isinstance(default.graph.node_dict["drop_notifications"].definition, GraphDefinition)

    monkeypatch.setenv("MUSICBUTLER_SEND_SHARDS", "4")
    monkeypatch.setenv("MUSICBUTLER_EXECUTOR", "celery")
    monkeypatch.setenv("MUSICBUTLER_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    sharded = build_definitions().resolve_job_def("daily_drops_job")
    assert sharded.executor_def.name == "celery_executor"
    graph = sharded.graph.node_dict["drop_notifications"].definition
    assert isinstance(graph, GraphDefinition)
    assert [node.name for node in graph.node_defs] == [
        "plan_send_shards",
        "send_shard",
        "collect_send_shards",
    ]

    # Malformed: the definitions still load (defaults), the run is refused at start.
    monkeypatch.setenv("MUSICBUTLER_SEND_SHARDS", "many")
    fallback = build_definitions().resolve_job_def("daily_drops_job")
    assert fallback.executor_def.name == "multiprocess"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MUSICBUTLER_SEND_SHARDS": "0"}, "MUSICBUTLER_SEND_SHARDS"),
        ({"MUSICBUTLER_EXECUTOR": "celeri"}, "MUSICBUTLER_EXECUTOR"),
        ({"MUSICBUTLER_EXECUTOR": "celery"}, "MUSICBUTLER_CELERY_BROKER"),
        (
            {"MUSICBUTLER_EXECUTOR": "celery", "MUSICBUTLER_CELERY_BROKER": "127.0.0.1:5672"},
            "MUSICBUTLER_CELERY_BROKER",
        ),
    ],
)
def test_a_malformed_execution_setting_names_its_variable(env: dict, variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)

"""The definitions load and expose the contract's job, schedule and asset keys."""

from dagster import AssetKey, DailyPartitionsDefinition

from musicbutler_pipeline.definitions import defs


def test_job_schedule_and_asset_keys() -> None:
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert keys == {
        AssetKey(name)
        for name in ("user_libraries", "artist_releases", "user_drops", "drop_notifications")
    }
    job = defs.resolve_job_def("daily_drops_job")
    schedule = defs.resolve_schedule_def("daily_drops_schedule")
    assert schedule.job_name == job.name == "daily_drops_job"
    assert schedule.cron_schedule == "35 21 * * *"
    assert schedule.execution_timezone in (None, "UTC")


def test_all_assets_share_one_utc_daily_partitioning() -> None:
    partitionings = {spec.partitions_def for spec in defs.resolve_all_asset_specs()}
    assert len(partitionings) == 1
    [partitions] = partitionings
    assert isinstance(partitions, DailyPartitionsDefinition)
    assert partitions.timezone == "UTC"
    assert "2026-11-23" in partitions.get_partition_keys()


def test_lineage_runs_libraries_and_releases_into_drops_into_notifications() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("user_drops")).parent_keys == {
        AssetKey("user_libraries"),
        AssetKey("artist_releases"),
    }
    assert graph.get(AssetKey("drop_notifications")).parent_keys == {AssetKey("user_drops")}
    notifications = defs.resolve_assets_def("drop_notifications")
    assert notifications.op.pool == "musicbutler_notifications"

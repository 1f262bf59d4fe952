"""The definitions load and expose the contract's job, schedule and asset keys."""

from dagster import AssetKey, DailyPartitionsDefinition

from musicbutler_pipeline.definitions import defs


def test_job_schedule_and_asset_keys() -> None:
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert keys == {
        AssetKey(name)
        for name in (
            "user_libraries",
            "artist_releases",
            "user_drops",
            "listen_links",
            "drop_notifications",
        )
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


def test_lineage_runs_libraries_and_releases_into_drops_into_links_into_notifications() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("user_drops")).parent_keys == {
        AssetKey("user_libraries"),
        AssetKey("artist_releases"),
    }
    # Listen links are looked up for the owed release groups only, so after user_drops.
    assert graph.get(AssetKey("listen_links")).parent_keys == {AssetKey("user_drops")}
    assert graph.get(AssetKey("drop_notifications")).parent_keys == {
        AssetKey("user_drops"),
        AssetKey("listen_links"),
    }
    notifications = defs.resolve_assets_def("drop_notifications")
    assert notifications.op.pool == "musicbutler_notifications"
    # Its MusicBrainz lookups share the search's pool: one MusicBrainz caller at a time.
    links = defs.resolve_assets_def("listen_links")
    assert links.op.pool == defs.resolve_assets_def("artist_releases").op.pool == "musicbrainz"


def test_every_asset_says_what_it_is_who_owns_it_and_its_columns() -> None:
    from dagster import TableSchema

    from musicbutler_pipeline.warehouse.schema import (
        drops,
        library_artists,
        release_group_links,
        release_groups,
        sends,
    )

    tables = {
        "user_libraries": library_artists,
        "artist_releases": release_groups,
        "user_drops": drops,
        "listen_links": release_group_links,
        "drop_notifications": sends,
    }
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == set(tables)
    for name, spec in specs.items():
        assert spec.description and len(spec.description) > 40, name
        assert spec.owners, name
        assert spec.kinds and spec.kinds <= {"sql", "csv", "musicbrainz", "email"}, name
        assert spec.code_version, name
        schema = spec.metadata["dagster/column_schema"]
        assert isinstance(schema, TableSchema), name
        assert [column.name for column in schema.columns] == list(tables[name].columns.keys())
        assert all(column.type for column in schema.columns), name
    # A code version changes when an asset's logic does: the five are told apart.
    assert len({spec.code_version for spec in specs.values()}) == 5

"""Everything Dagster loads: `dagster dev -m musicbutler_pipeline.definitions`."""

from collections.abc import Sequence

from dagster import Definitions, ExecutorDefinition, ScheduleDefinition, SensorDefinition

from musicbutler_pipeline.assets import daily_assets, drop_notifications
from musicbutler_pipeline.assets.shards import sharded_drop_notifications
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.executor import execution_settings, executor_for
from musicbutler_pipeline.jobs import daily_drops_job, prune_warehouse_job
from musicbutler_pipeline.resources import (
    LibrarySourceResource,
    ListenBrainzLibrarySource,
    MailerResource,
    MusicBrainzReleaseSource,
    ReleaseSourceResource,
    SettingsResource,
    WarehouseResource,
)
from musicbutler_pipeline.schedules import daily_drops_schedule, prune_warehouse_schedule
from musicbutler_pipeline.sensors import all_sensors
from musicbutler_pipeline.sensors.presence import start_scheduler_watch


def build_definitions(
    *,
    warehouse: WarehouseResource | None = None,
    release_source: ReleaseSourceResource | None = None,
    mailer: MailerResource | None = None,
    library_source: LibrarySourceResource | None = None,
    schedules: Sequence[ScheduleDefinition] | None = None,
    sensors: Sequence[SensorDefinition] | None = None,
    sharded: bool | None = None,
    executor: ExecutorDefinition | None = None,
) -> Definitions:
    """The project's definitions; resources default to those configured by the environment (read
    once when a run or sensor tick starts), schedules and sensors to the project's own.

    ``sharded`` (default: ``MUSICBUTLER_SEND_SHARDS`` > 1 now) makes ``drop_notifications`` the
    graph of shards; ``executor`` defaults to ``MUSICBUTLER_EXECUTOR``'s (executor.py)."""
    settings = SettingsResource()
    execution = execution_settings()
    if sharded is None:
        sharded = execution.send_shards > 1
    assets = [
        sharded_drop_notifications if asset is drop_notifications and sharded else asset
        for asset in daily_assets
    ]
    return Definitions(
        executor=executor or executor_for(execution),
        assets=assets,
        asset_checks=daily_checks,
        jobs=[daily_drops_job, prune_warehouse_job],
        schedules=[daily_drops_schedule, prune_warehouse_schedule]
        if schedules is None
        else schedules,
        sensors=all_sensors if sensors is None else sensors,
        resources={
            "warehouse": warehouse or WarehouseResource(settings=settings),
            "release_source": release_source or MusicBrainzReleaseSource(settings=settings),
            "mailer": mailer or MailerResource(settings=settings),
            # ListenBrainz by default; it calls out only for subscribers with a ListenBrainz user.
            "library_source": library_source or ListenBrainzLibrarySource(settings=settings),
        },
    )


defs = build_definitions()

# Only in a scheduler's code server (dagster-daemon, dagster dev): its presence, written whether or
# not this daemon is the one that evaluates the sensors.
start_scheduler_watch()

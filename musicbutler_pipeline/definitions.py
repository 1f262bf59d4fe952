"""Everything Dagster loads: `dagster dev -m musicbutler_pipeline.definitions`."""

from collections.abc import Sequence

from dagster import Definitions, ScheduleDefinition, SensorDefinition

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.checks import daily_checks
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
) -> Definitions:
    """The project's definitions; resources default to those configured by the environment (read
    once when a run or sensor tick starts), schedules and sensors to the project's own."""
    settings = SettingsResource()
    return Definitions(
        assets=daily_assets,
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

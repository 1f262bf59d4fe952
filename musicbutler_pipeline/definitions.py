"""Everything Dagster loads: `dagster dev -m musicbutler_pipeline.definitions`."""

from dagster import Definitions

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.resources import (
    MailerResource,
    MusicBrainzReleaseSource,
    ReleaseSourceResource,
    WarehouseResource,
)
from musicbutler_pipeline.schedules import daily_drops_schedule
from musicbutler_pipeline.sensors import all_sensors


def build_definitions(
    *,
    warehouse: WarehouseResource | None = None,
    release_source: ReleaseSourceResource | None = None,
    mailer: MailerResource | None = None,
) -> Definitions:
    """The project's definitions; resources default to those configured by the environment."""
    return Definitions(
        assets=daily_assets,
        asset_checks=daily_checks,
        jobs=[daily_drops_job],
        schedules=[daily_drops_schedule],
        sensors=all_sensors,
        resources={
            "warehouse": warehouse or WarehouseResource(),
            "release_source": release_source or MusicBrainzReleaseSource(),
            "mailer": mailer or MailerResource(),
        },
    )


defs = build_definitions()

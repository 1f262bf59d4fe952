from dagster import AssetSelection, define_asset_job

from musicbutler_pipeline.assets import daily_assets

# The run coordinator's tag concurrency limit in dagster.yaml keys on this tag.
NOTIFICATION_RUN_TAG = "musicbutler/notifications"

daily_drops_job = define_asset_job(
    name="daily_drops_job",
    selection=AssetSelection.assets(*daily_assets),
    tags={NOTIFICATION_RUN_TAG: "daily"},
    description="The whole day: libraries, releases, drops, and one digest per subscriber.",
)

from dagster import (
    AssetSelection,
    MetadataValue,
    OpExecutionContext,
    Output,
    define_asset_job,
    job,
    op,
)

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.retention import prune_warehouse as prune_tables

# The run coordinator's tag concurrency limit in dagster.yaml keys on this tag.
NOTIFICATION_RUN_TAG = "musicbutler/notifications"

daily_drops_job = define_asset_job(
    name="daily_drops_job",
    selection=AssetSelection.assets(*daily_assets),
    tags={NOTIFICATION_RUN_TAG: "daily"},
    description="The whole day: libraries, releases, drops, listen links, a digest per subscriber.",
)


# An op, not an asset: pruning makes no data of its own, and the four daily assets keep their one
# partitioning. Its counts are the op's output metadata, on the run's page in the UI.
@op(
    description=(
        "Deletes drops older than MUSICBUTLER_KEEP_DROPS_DAYS and source pages older than "
        "MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS, in bounded batches. Sends and announcements (the "
        "exactly-once record) are never pruned."
    ),
    tags={"musicbutler/side-effect": "delete"},
)
def prune_warehouse(context: OpExecutionContext, warehouse: WarehouseResource) -> Output[int]:
    settings = warehouse.environment()
    pruned = prune_tables(
        warehouse.engine,
        latest_partition_day(),
        keep_drops_days=settings.keep_drops_days,
        keep_source_pages_days=settings.keep_source_pages_days,
    )
    metadata: dict[str, int | str] = {}
    for table in pruned:
        context.log.info("%s: %d rows before %s deleted", table.table, table.rows, table.before)
        metadata[f"{table.table}_deleted"] = table.rows
        metadata[f"{table.table}_kept_from"] = table.before.isoformat()
    deleted = sum(table.rows for table in pruned)
    return Output(deleted, metadata={**metadata, "rows_deleted": MetadataValue.int(deleted)})


@job(description="Prunes drops and source pages to their retention windows (daily schedule).")
def prune_warehouse_job() -> None:
    prune_warehouse()

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.libraries import user_libraries
from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.assets.releases import artist_releases
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.dialect import refresh_statistics, serialized_write
from musicbutler_pipeline.warehouse.drops import drop_stats, exclusion_counts, replace_drops
from musicbutler_pipeline.warehouse.health import top_drops
from musicbutler_pipeline.warehouse.schema import drops


@asset(
    partitions_def=daily_partitions,
    deps=[user_libraries, artist_releases],
    group_name="musicbutler",
    kinds={"sql"},
    owners=["team:data"],
    code_version="drops-2",
    metadata={"dagster/column_schema": column_schema(drops)},
    description=(
        "Per subscriber, the followed artists' release groups of the day (of the week, on a "
        "weekly subscriber's weekday) that their preferences let through, minus any release "
        "group already announced to that subscriber on another day; what was left out, and "
        "why, in drop_exclusions. A few set-based INSERT ... SELECT statements."
    ),
)
def user_drops(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    with serialized_write(warehouse.engine, "user_drops") as connection:
        replace_drops(connection, day)
        stats = drop_stats(connection, day)
        left_out = exclusion_counts(connection, day)
        top = top_drops(connection, day)
    context.log.info("%s: %d drops for %d subscribers", day, stats.drops, stats.subscribers)
    refresh_statistics(warehouse.engine, drops)
    return MaterializeResult(
        metadata={
            "drops": stats.drops,
            "subscribers_with_drops": stats.subscribers,
            "release_groups_with_followers": stats.release_groups,
            "preview": MetadataValue.md(
                markdown_table(("release group", "artist credit", "subscribers"), top)
            ),
            # Followed artists' release groups left out, by reason (drop_exclusions.reason).
            "left_out": MetadataValue.json(left_out),
            "dagster/column_schema": column_schema(drops),
            "dagster/row_count": stats.drops,
        }
    )

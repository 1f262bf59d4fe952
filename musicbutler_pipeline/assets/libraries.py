from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.repository import library_stats, top_followed_artists


@asset(
    partitions_def=daily_partitions,
    group_name="musicbutler",
    kinds={"sql"},
    description=(
        "Who follows which artist on the partition's day. Follows are kept once, with their "
        "validity, in `library_artists`; this asset reads the day's view and copies nothing."
    ),
)
def user_libraries(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    with warehouse.engine.connect() as connection:
        stats = library_stats(connection, day)
        top = top_followed_artists(connection, day)
    context.log.info(
        "%s: %d follows of %d artists by %d subscribers",
        day,
        stats.follows,
        stats.distinct_artists,
        stats.subscribers,
    )
    return MaterializeResult(
        metadata={
            "follows": stats.follows,
            "subscribers_with_follows": stats.subscribers,
            "subscribed_with_follows": stats.active_subscribers,
            "distinct_artists": stats.distinct_artists,
            "follows_added_on_day": stats.added_on_day,
            "follows_removed_on_day": stats.removed_on_day,
            "most_followed": MetadataValue.md(markdown_table(("artist", "followers"), top)),
        }
    )

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import LibrarySourceResource, WarehouseResource
from musicbutler_pipeline.sources.listenbrainz import LibraryStatus
from musicbutler_pipeline.warehouse.dialect import serialized_write
from musicbutler_pipeline.warehouse.libraries import (
    end_unlinked_listenbrainz_follows,
    library_summary,
    listenbrainz_subscribers,
    sync_listenbrainz_follows,
)
from musicbutler_pipeline.warehouse.schema import library_artists


@asset(
    partitions_def=daily_partitions,
    group_name="musicbutler",
    kinds={"sql", "csv"},
    owners=["team:data"],
    code_version="libraries-1",
    metadata={"dagster/column_schema": column_schema(library_artists)},
    description=(
        "Who follows which artist on the partition's day. Follows are kept once, with their "
        "validity, in `library_artists`; this asset copies nothing per day. Subscribers with a "
        "ListenBrainz user get their top artists synced first (source 'listenbrainz')."
    ),
)
def user_libraries(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    library_source: LibrarySourceResource,
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    listenbrainz = _sync_listenbrainz(context, day, warehouse, library_source)
    with warehouse.engine.connect() as connection:
        stats, top = library_summary(connection, day)
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
            "dagster/column_schema": column_schema(library_artists),
            "dagster/row_count": stats.follows,
            **listenbrainz,
        }
    )


def _sync_listenbrainz(
    context: AssetExecutionContext,
    day: date,
    warehouse: WarehouseResource,
    library_source: LibrarySourceResource,
) -> dict[str, Any]:
    """Import ListenBrainz users' top artists; metadata saying what happened to whom."""
    if not library_source.imports_listenbrainz:
        return {"listenbrainz": "not imported (CSV-only library source)"}
    with warehouse.engine.connect() as connection:
        linked = listenbrainz_subscribers(connection)
    subscribers_of: dict[str, list[int]] = defaultdict(list)
    for subscriber_id, user in linked:
        subscribers_of[user].append(subscriber_id)
    # Network first, outside any transaction; the writes below are one short transaction.
    summary = library_source.fetch(sorted(subscribers_of))
    libraries = {
        subscriber_id: library.follows()
        for library in summary.with_status(LibraryStatus.OK)
        for subscriber_id in subscribers_of[library.user]
    }
    with serialized_write(warehouse.engine, "user_libraries") as connection:
        sync = sync_listenbrainz_follows(connection, day, libraries, followed_at=datetime.now(UTC))
        unlinked = end_unlinked_listenbrainz_follows(connection, day)

    problems = [
        (library.user, library.status.value, library.error or "previous library kept")
        for library in summary.libraries
        if library.status is not LibraryStatus.OK
    ] + [(user, "not_attempted", "ListenBrainz kept failing") for user in summary.not_attempted]
    for user, status, detail in problems:
        context.log.warning("ListenBrainz user %s: %s (%s)", user, status, detail)

    def users(status: LibraryStatus) -> list[str]:
        return [library.user for library in summary.with_status(status)]

    return {
        "listenbrainz_users": len(subscribers_of),
        "listenbrainz_synced": len(users(LibraryStatus.OK)),
        "listenbrainz_stats_not_computed": len(users(LibraryStatus.STATS_NOT_COMPUTED)),
        "listenbrainz_unknown_users": len(users(LibraryStatus.UNKNOWN_USER)),
        "listenbrainz_failed": len(users(LibraryStatus.FAILED)) + len(summary.not_attempted),
        "listenbrainz_requests": summary.requests,
        "listenbrainz_follows_added": sync.added,
        "listenbrainz_follows_ended": sync.ended + unlinked,
        "listenbrainz_follows_unchanged": sync.unchanged,
        "listenbrainz_entries_without_mbid": sum(
            library.entries_without_mbid for library in summary.libraries
        ),
        "listenbrainz_problems": MetadataValue.md(
            markdown_table(("user", "status", "detail"), problems[:50])
        ),
    }

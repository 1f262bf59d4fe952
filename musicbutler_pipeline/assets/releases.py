from datetime import UTC, datetime

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.domain.preferences import ReleaseType
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import ReleaseSourceResource, WarehouseResource
from musicbutler_pipeline.settings import SettingsError
from musicbutler_pipeline.sources.http import SourceError
from musicbutler_pipeline.sources.musicbrainz import SOURCE_NAME
from musicbutler_pipeline.warehouse.dialect import serialized_write
from musicbutler_pipeline.warehouse.pages import replace_source_pages
from musicbutler_pipeline.warehouse.preferences import subscribers_selecting
from musicbutler_pipeline.warehouse.releases import claim_release_groups
from musicbutler_pipeline.warehouse.schema import release_groups

# The client's rate limiter holds within one process. Runs of several partitions at once (a
# backfill) are separate processes: with a limit of 1 on this pool they fetch one at a time.
MUSICBRAINZ_POOL = "musicbrainz"


@asset(
    partitions_def=daily_partitions,
    group_name="musicbutler",
    kinds={"sql", "musicbrainz"},
    owners=["team:data"],
    code_version="releases-2",
    metadata={"dagster/column_schema": column_schema(release_groups)},
    pool=MUSICBRAINZ_POOL,
    description=(
        "Release groups announced on the partition's day (MusicBrainz, searched by date with a "
        "lookback window): those first released exactly that day, plus those of the window "
        "entered late that no earlier partition owns. The raw pages are stored with them. "
        "The search asks for the primary types Broadcast and Other too only while some "
        "subscriber selects the release type broadcast."
    ),
)
def artist_releases(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    release_source: ReleaseSourceResource,
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    # Widening costs requests for everyone (docs/preferences.md): only while someone wants it.
    with warehouse.engine.connect() as connection:
        wanting_broadcasts = subscribers_selecting(connection, ReleaseType.BROADCAST)
    # Every page is fetched before anything is written: a page that keeps failing fails the
    # asset and leaves the partition's previous rows exactly as they were.
    try:
        fetched = release_source.fetch(day, widened=wanting_broadcasts > 0)
    except (SettingsError, SourceError) as exc:
        # One plain line for the operator (the URL and status, or the variable to set) rather
        # than a traceback; nothing has been written.
        raise Failure(description=str(exc), allow_retries=isinstance(exc, SourceError)) from exc
    # One writer at a time: a partition may take release groups over from another (lookback).
    with serialized_write(warehouse.engine, "artist_releases") as connection:
        pages = replace_source_pages(connection, day, SOURCE_NAME, fetched.pages)
        claim = claim_release_groups(
            connection,
            day,
            fetched.release_groups,
            source=fetched.source,
            pages_source=SOURCE_NAME,
            fetched_at=datetime.now(UTC),
        )
    if fetched.records_skipped:
        context.log.warning(
            "%d malformed MusicBrainz records skipped: %s",
            fetched.records_skipped,
            ", ".join(fetched.skipped_ids[:20]),
        )
    if wanting_broadcasts and not fetched.widened:
        context.log.warning(
            "%d subscribers select broadcasts but %s cannot search for them (recorded pages of "
            "the narrow search): fetched without them",
            wanting_broadcasts,
            fetched.source,
        )
    context.log.info(
        "%s: %d release groups (%d dated that day, %d entered late) from %d requests, %s",
        day,
        len(claim.owned),
        claim.dated_on_day,
        claim.added_late,
        fetched.requests,
        _query_note(fetched.widened, wanting_broadcasts),
    )
    preview = sorted(claim.owned, key=lambda group: (group.credit.lower(), group.title))
    return MaterializeResult(
        metadata={
            "release_groups": len(claim.owned),
            "dagster/column_schema": column_schema(release_groups),
            "dagster/row_count": len(claim.owned),
            "release_groups_dated_on_day": claim.dated_on_day,
            "release_groups_added_late": claim.added_late,
            "release_groups_moved_from_later_partitions": claim.moved_from_later,
            "release_groups_owned_by_earlier_partitions": claim.owned_by_earlier,
            "release_groups_before_watch_start": claim.before_watch_start,
            "release_groups_exact_in_window": len(fetched.release_groups),
            "window_start": str(fetched.window_start),
            "window_end": str(fetched.window_end),
            "watch_start": str(claim.watch_start),
            "records_seen": fetched.records_seen,
            "records_skipped_malformed": fetched.records_skipped,
            "skipped_record_ids": ", ".join(fetched.skipped_ids[:50]),
            "records_without_exact_date": fetched.not_exact_date,
            "requests": fetched.requests,
            "query": fetched.pages[0].query if fetched.pages else "",
            "query_widened": fetched.widened,
            "query_widened_why": _query_note(fetched.widened, wanting_broadcasts),
            "subscribers_selecting_broadcast": wanting_broadcasts,
            "pages_stored": pages,
            "source": fetched.source,
            "pages": MetadataValue.md(
                markdown_table(
                    ("offset", "records", "of", "sha256"),
                    (
                        (page.offset, page.record_count, page.total_count, page.sha256)
                        for page in fetched.pages[:50]
                    ),
                )
            ),
            "preview": MetadataValue.md(
                markdown_table(
                    ("artist credit", "title", "type", "date"),
                    (
                        (group.credit, group.title, group.type_label, group.first_release_date)
                        for group in preview[:20]
                    ),
                )
            ),
        }
    )


def _query_note(widened: bool, wanting_broadcasts: int) -> str:
    if widened:
        return f"search widened to broadcasts for {wanting_broadcasts} subscribers who select them"
    if wanting_broadcasts:
        return (
            f"search not widened although {wanting_broadcasts} subscribers select broadcasts: "
            "the source has only the narrow search"
        )
    return "narrow search: no subscriber selects broadcasts"

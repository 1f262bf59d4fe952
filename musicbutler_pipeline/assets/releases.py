from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import ReleaseSourceResource, WarehouseResource
from musicbutler_pipeline.warehouse.repository import replace_release_groups


@asset(
    partitions_def=daily_partitions,
    group_name="musicbutler",
    kinds={"sql"},
    description="Release groups first released exactly on the partition's day (MusicBrainz).",
)
def artist_releases(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    release_source: ReleaseSourceResource,
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    fetched = release_source.fetch(day)
    with warehouse.engine.begin() as connection:
        replace_release_groups(
            connection,
            day,
            fetched.release_groups,
            source=fetched.source,
            fetched_at=datetime.now(UTC),
        )
    if fetched.records_skipped:
        context.log.warning("%d malformed MusicBrainz records skipped", fetched.records_skipped)
    preview = sorted(fetched.release_groups, key=lambda group: (group.credit.lower(), group.title))
    return MaterializeResult(
        metadata={
            "release_groups": len(fetched.release_groups),
            "records_seen": fetched.records_seen,
            "records_skipped_malformed": fetched.records_skipped,
            "records_without_exact_date": fetched.not_exact_date,
            "requests": fetched.requests,
            "source": fetched.source,
            "preview": MetadataValue.md(
                markdown_table(
                    ("artist credit", "title", "type"),
                    ((group.credit, group.title, group.type_label) for group in preview[:20]),
                )
            ),
        }
    )

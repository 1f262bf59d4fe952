from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.assets.releases import MUSICBRAINZ_POOL
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import ReleaseSourceResource, WarehouseResource
from musicbutler_pipeline.settings import SettingsError
from musicbutler_pipeline.sources.http import SourceError
from musicbutler_pipeline.sources.musicbrainz_links import LINKS_SOURCE_NAME, ListenLinkFetch
from musicbutler_pipeline.warehouse.dialect import serialized_write
from musicbutler_pipeline.warehouse.links import owed_release_groups, replace_listen_links
from musicbutler_pipeline.warehouse.pages import replace_source_pages
from musicbutler_pipeline.warehouse.schema import release_group_links


@asset(
    partitions_def=daily_partitions,
    deps=[user_drops],
    group_name="musicbutler",
    kinds={"sql", "musicbrainz"},
    owners=["team:data"],
    code_version="listen-links-1",
    metadata={"dagster/column_schema": column_schema(release_group_links)},
    pool=MUSICBRAINZ_POOL,
    description=(
        "Where each release group owed that day can be heard (Spotify, Bandcamp, Apple Music "
        "...): the URL relationships of its MusicBrainz releases, one lookup per owed release "
        "group, raw pages stored. A failed lookup never fails the day: that release keeps its "
        "MusicBrainz link."
    ),
)
def listen_links(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    release_source: ReleaseSourceResource,
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    with warehouse.engine.connect() as connection:
        owed = owed_release_groups(connection, day)
    try:
        fetched = release_source.fetch_listen_links(owed)
    except (SettingsError, SourceError) as exc:
        # Listen links are a nicety: the digests still go out, with their MusicBrainz links.
        context.log.warning("no listen links for %s: %s", day, exc)
        fetched = ListenLinkFetch(links={}, failed=tuple((mbid, str(exc)) for mbid in owed))
    with serialized_write(warehouse.engine, "listen_links") as connection:
        pages = replace_source_pages(connection, day, LINKS_SOURCE_NAME, fetched.pages)
        rows = replace_listen_links(connection, day, fetched.links, fetched_at=datetime.now(UTC))
    if fetched.failed:
        context.log.warning(
            "%d listen-link lookups failed: %s",
            len(fetched.failed),
            "; ".join(f"{mbid}: {why}" for mbid, why in fetched.failed[:5]),
        )
    with_links = sum(bool(links) for links in fetched.links.values())
    context.log.info(
        "%s: %d of %d owed release groups have listen links (%d links) from %d requests",
        day,
        with_links,
        len(owed),
        rows,
        fetched.requests,
    )
    services: dict[str, int] = {}
    for links in fetched.links.values():
        for link in links:
            services[link.service] = services.get(link.service, 0) + 1
    return MaterializeResult(
        metadata={
            "release_groups_owed": len(owed),
            "release_groups_looked_up": len(fetched.links),
            "release_groups_with_links": with_links,
            "lookups_failed": len(fetched.failed),
            "lookups_not_tried": len(fetched.not_tried),
            "links": rows,
            "requests": fetched.requests,
            "responses_with_retries": fetched.responses,
            "pages_stored": pages,
            "releases_seen": fetched.releases_seen,
            "releases_skipped_malformed": fetched.records_skipped,
            "skipped_release_ids": ", ".join(fetched.skipped_ids[:50]),
            "failed_release_groups": ", ".join(mbid for mbid, _why in fetched.failed[:50]),
            "source": fetched.source,
            "dagster/row_count": rows,
            "dagster/column_schema": column_schema(release_group_links),
            "services": MetadataValue.md(
                markdown_table(("service", "release groups"), sorted(services.items()))
            ),
        }
    )

from dataclasses import replace
from datetime import UTC, datetime

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.assets.releases import MUSICBRAINZ_POOL
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import ReleaseSourceResource, WarehouseResource
from musicbutler_pipeline.settings import SettingsError
from musicbutler_pipeline.sources.http import SourceError
from musicbutler_pipeline.sources.musicbrainz_links import (
    LINKS_SOURCE_NAME,
    ListenLinkFetch,
    pages_by_release_group,
)
from musicbutler_pipeline.warehouse.dialect import serialized_write
from musicbutler_pipeline.warehouse.links import (
    owed_listen_links,
    owed_release_groups,
    replace_listen_links,
)
from musicbutler_pipeline.warehouse.pages import replace_source_pages, stored_source_pages
from musicbutler_pipeline.warehouse.schema import release_group_links


class ListenLinksConfig(Config):
    refresh: bool = Field(
        default=False,
        description="Look every owed release group up again, also those this day already looked "
        "up (by default a rerun reuses their stored pages and links, and asks MusicBrainz nothing "
        "for them).",
    )


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
        "group, raw pages stored. A rerun of the day looks up only the release groups it has no "
        "stored lookup of (config refresh: all of them). A failed lookup never fails the day: "
        "that release keeps its MusicBrainz link."
    ),
)
def listen_links(
    context: AssetExecutionContext,
    config: ListenLinksConfig,
    warehouse: WarehouseResource,
    release_source: ReleaseSourceResource,
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    with warehouse.engine.connect() as connection:
        owed = owed_release_groups(connection, day)
        stored = [] if config.refresh else stored_source_pages(connection, day, LINKS_SOURCE_NAME)
    # What this day already looked up (a rerun) is kept, pages and links, and not asked again.
    reused = pages_by_release_group(stored, owed)
    to_look_up = [mbid for mbid in owed if mbid not in reused]
    try:
        fetched = (
            release_source.fetch_listen_links(to_look_up) if to_look_up else ListenLinkFetch({})
        )
    except (SettingsError, SourceError) as exc:
        # Listen links are a nicety: the digests still go out, with their MusicBrainz links.
        context.log.warning("no listen links for %s: %s", day, exc)
        fetched = ListenLinkFetch(links={}, failed=tuple((mbid, str(exc)) for mbid in to_look_up))
    kept_pages = [page for mbid in owed for page in reused.get(mbid, ())]
    day_pages = [
        replace(page, offset=number) for number, page in enumerate([*kept_pages, *fetched.pages])
    ]
    with serialized_write(warehouse.engine, "listen_links") as connection:
        pages = replace_source_pages(connection, day, LINKS_SOURCE_NAME, day_pages)
        written = replace_listen_links(connection, day, fetched.links, fetched_at=datetime.now(UTC))
        day_links = owed_listen_links(connection, day)
    rows = sum(len(links) for links in day_links.values())
    if fetched.failed:
        context.log.warning(
            "%d listen-link lookups failed: %s",
            len(fetched.failed),
            "; ".join(f"{mbid}: {why}" for mbid, why in fetched.failed[:5]),
        )
    with_links = len(day_links)
    context.log.info(
        "%s: %d of %d owed release groups have listen links (%d links); looked up %d from %d "
        "requests, reused %d",
        day,
        with_links,
        len(owed),
        rows,
        len(to_look_up),
        fetched.requests,
        len(reused),
    )
    services: dict[str, int] = {}
    for links in day_links.values():
        for link in links:
            services[link.service] = services.get(link.service, 0) + 1
    return MaterializeResult(
        metadata={
            "release_groups_owed": len(owed),
            "release_groups_looked_up": len(fetched.links),
            "release_groups_reused": len(reused),
            "release_groups_with_links": with_links,
            "lookups_failed": len(fetched.failed),
            "lookups_not_tried": len(fetched.not_tried),
            "links": rows,
            "links_written": written,
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

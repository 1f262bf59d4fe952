"""Small helpers that put known rows in a warehouse, for tests of the set-based logic, and
read stored source pages back to re-derive a day from them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, insert, select

from musicbutler_pipeline.domain.models import CreditedArtist, ReleaseGroup, SourcePage
from musicbutler_pipeline.sources.musicbrainz import ReleaseFetch, collect, window
from musicbutler_pipeline.warehouse.pages import stored_source_pages
from musicbutler_pipeline.warehouse.releases import replace_release_groups
from musicbutler_pipeline.warehouse.schema import library_artists, sends, source_pages, subscribers

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def mbid(label: str) -> str:
    """A stable identifier for a readable label, so tests can talk about 'artist:a'."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"test:{label}"))


def add_subscriber(engine: Engine, email: str, name: str | None = None) -> int:
    with engine.begin() as connection:
        return connection.execute(
            insert(subscribers)
            .values(email=email, name=name, subscribed_at=NOW, updated_at=NOW)
            .returning(subscribers.c.id)
        ).scalar_one()


def follow(
    engine: Engine, subscriber_id: int, artist: str, *, unfollowed_on: date | None = None
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(library_artists).values(
                subscriber_id=subscriber_id,
                artist_mbid=mbid(f"artist:{artist}"),
                artist_name=artist,
                source="test",
                followed_at=NOW,
                unfollowed_on=unfollowed_on,
            )
        )


def release_group(
    title: str, *artists: str, released: str = "2026-11-23", joins: tuple[str, ...] = ()
) -> ReleaseGroup:
    from musicbutler_pipeline.domain.rules import exact_release_date

    phrases = list(joins) + [""] * (len(artists) - len(joins))
    return ReleaseGroup(
        mbid=mbid(f"rg:{title}"),
        title=title,
        primary_type="Album",
        secondary_types=(),
        first_release_date=released,
        release_date=exact_release_date(released),
        artists=tuple(
            CreditedArtist(mbid(f"artist:{name}"), name, phrase)
            for name, phrase in zip(artists, phrases, strict=True)
        ),
    )


def store_releases(engine: Engine, day: date, *groups: ReleaseGroup) -> None:
    with engine.begin() as connection:
        replace_release_groups(connection, day, groups, source="test", fetched_at=NOW)


def record_sent_email(
    connection: Connection, *, day: date, subscriber_id: int, recipient: str, release_groups: int
) -> int:
    """A ``sends`` row for an email already sent on ``day``, as the ledger leaves one; its id."""
    return connection.execute(
        insert(sends)
        .values(
            partition_date=day,
            subscriber_id=subscriber_id,
            state="sent",
            claim_token="t",
            run_id="r",
            host="h",
            pid=1,
            code_version="v",
            message_id="<m>",
            recipient=recipient,
            release_group_count=release_groups,
            claimed_at=NOW,
            updated_at=NOW,
        )
        .returning(sends.c.id)
    ).scalar_one()


def load_source_pages(connection: Connection, day: date, source: str) -> list[SourcePage]:
    """The stored pages of ``(day, source)`` in offset order, decompressed (as the warehouse
    reads them back). Raises if a body does not match the sha256 stored beside it."""
    pages = stored_source_pages(connection, day, source)
    stored_sha256 = connection.execute(
        select(source_pages.c.sha256)
        .where(source_pages.c.partition_date == day, source_pages.c.source == source)
        .order_by(source_pages.c.page_offset)
    ).scalars()
    for page, sha256 in zip(pages, stored_sha256, strict=True):
        if page.sha256 != sha256:
            raise ValueError(f"stored page {page.url} does not match its sha256 {sha256}")
    return pages


def rederive(
    pages: Iterable[SourcePage],
    day: date,
    *,
    lookback_days: int,
    source: str = "stored pages",
) -> ReleaseFetch:
    """The fetch of ``day`` computed again from stored pages, through the same rules."""
    start, end = window(day, lookback_days)
    return collect(pages, start=start, end=end, source=source)


def dated(fetch: ReleaseFetch, day: date) -> tuple[ReleaseGroup, ...]:
    """The release groups of ``fetch`` dated exactly ``day``."""
    return tuple(group for group in fetch.release_groups if group.release_date == day)

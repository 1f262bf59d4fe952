"""Small helpers that put known rows in a warehouse, for tests of the set-based logic."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import Engine, insert

from musicbutler_pipeline.domain.models import CreditedArtist, ReleaseGroup
from musicbutler_pipeline.warehouse.repository import replace_release_groups
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers

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

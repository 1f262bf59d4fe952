"""Libraries: who follows which artist on a day, library statistics, and the follows synced
from ListenBrainz."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, case, func, or_, select, text, update

from musicbutler_pipeline.warehouse.dialect import PARAMETER_CHUNK, upsert_insert
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers


def follows_on(day: date) -> ColumnElement[bool]:
    """A follow counts on ``day`` until the day it was removed. Adding is retroactive (a
    newly imported library is owed a re-run day's drops; the announce-once rule keeps any
    release from being repeated), removal is not."""
    return or_(library_artists.c.unfollowed_on.is_(None), library_artists.c.unfollowed_on > day)


@dataclass(frozen=True, slots=True)
class LibraryStats:
    subscribers: int
    active_subscribers: int
    follows: int
    distinct_artists: int
    added_on_day: int
    removed_on_day: int


def library_stats(connection: Connection, day: date) -> LibraryStats:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    active = subscribers.c.unsubscribed_at.is_(None)
    row = connection.execute(
        select(
            func.count(func.distinct(library_artists.c.subscriber_id)),
            func.count(func.distinct(case((active, library_artists.c.subscriber_id)))),
            func.count(),
            func.count(func.distinct(library_artists.c.artist_mbid)),
        )
        .select_from(library_artists.join(subscribers))
        .where(follows_on(day))
    ).one()
    added = connection.execute(
        select(func.count()).where(
            library_artists.c.followed_at >= start,
            library_artists.c.followed_at < start + timedelta(days=1),
        )
    ).scalar_one()
    removed = connection.execute(
        select(func.count()).where(library_artists.c.unfollowed_on == day)
    ).scalar_one()
    return LibraryStats(row[0], row[1], row[2], row[3], added, removed)


def top_followed_artists(
    connection: Connection, day: date, limit: int = 10
) -> list[tuple[str, int]]:
    rows = connection.execute(
        select(func.min(library_artists.c.artist_name), func.count().label("followers"))
        .where(follows_on(day))
        .group_by(library_artists.c.artist_mbid)
        .order_by(func.count().desc(), func.min(library_artists.c.artist_name))
        .limit(limit)
    ).all()
    return [(name, followers) for name, followers in rows]


LISTENBRAINZ = "listenbrainz"


def listenbrainz_subscribers(connection: Connection) -> list[tuple[int, str]]:
    """(subscriber id, ListenBrainz user) of subscribed subscribers who linked ListenBrainz."""
    rows = connection.execute(
        select(subscribers.c.id, subscribers.c.listenbrainz_user)
        .where(
            subscribers.c.listenbrainz_user.is_not(None),
            subscribers.c.listenbrainz_user != "",
            subscribers.c.unsubscribed_at.is_(None),
        )
        .order_by(subscribers.c.id)
    ).all()
    return [(subscriber_id, user) for subscriber_id, user in rows]


@dataclass(frozen=True, slots=True)
class FollowSync:
    subscribers: int
    added: int
    ended: int
    unchanged: int


def sync_listenbrainz_follows(
    connection: Connection,
    day: date,
    libraries: Mapping[int, Mapping[str, str]],
    *,
    followed_at: datetime,
) -> FollowSync:
    """Make each given subscriber's ListenBrainz-sourced follows equal their library.

    ``libraries`` maps a subscriber id to ``{artist_mbid: artist_name}``; subscribers not in it
    are left alone (their fetch failed or had nothing yet). New artists are followed from now
    (unless already followed from another source, e.g. a CSV import); ListenBrainz follows no
    longer in the library end on ``day``. Follows from other sources are never touched. A few
    statements per batch of subscribers, not one per follow. Run inside a transaction.
    """
    added = ended = unchanged = 0
    ids = list(libraries)
    for start in range(0, len(ids), PARAMETER_CHUNK):
        chunk = ids[start : start + PARAMETER_CHUNK]
        current = connection.execute(
            select(
                library_artists.c.id,
                library_artists.c.subscriber_id,
                library_artists.c.artist_mbid,
                library_artists.c.source,
            ).where(
                library_artists.c.subscriber_id.in_(chunk),
                library_artists.c.unfollowed_on.is_(None),
            )
        ).all()
        followed = {(row.subscriber_id, row.artist_mbid) for row in current}
        to_end = [
            row.id
            for row in current
            if row.source == LISTENBRAINZ and row.artist_mbid not in libraries[row.subscriber_id]
        ]
        unchanged += sum(
            1
            for row in current
            if row.source == LISTENBRAINZ and row.artist_mbid in libraries[row.subscriber_id]
        )
        to_add = [
            {
                "subscriber_id": subscriber_id,
                "artist_mbid": artist_mbid,
                "artist_name": artist_name,
                "source": LISTENBRAINZ,
                "followed_at": followed_at,
            }
            for subscriber_id in chunk
            for artist_mbid, artist_name in libraries[subscriber_id].items()
            if (subscriber_id, artist_mbid) not in followed
        ]
        for end_start in range(0, len(to_end), PARAMETER_CHUNK):
            ended += connection.execute(
                update(library_artists)
                .where(library_artists.c.id.in_(to_end[end_start : end_start + PARAMETER_CHUNK]))
                .values(unfollowed_on=day)
            ).rowcount
        for add_start in range(0, len(to_add), PARAMETER_CHUNK):
            statement = upsert_insert(connection, library_artists).values(
                to_add[add_start : add_start + PARAMETER_CHUNK]
            )
            # A concurrent CSV import may have added the same follow meanwhile: keep theirs.
            added += connection.execute(
                statement.on_conflict_do_nothing(
                    index_elements=["subscriber_id", "artist_mbid"],
                    index_where=text("unfollowed_on IS NULL"),
                )
            ).rowcount
    return FollowSync(subscribers=len(ids), added=added, ended=ended, unchanged=unchanged)


def end_unlinked_listenbrainz_follows(connection: Connection, day: date) -> int:
    """End, on ``day``, the ListenBrainz follows of subscribers who no longer link a
    ListenBrainz user (their library there is no longer theirs to follow)."""
    unlinked = select(subscribers.c.id).where(
        or_(subscribers.c.listenbrainz_user.is_(None), subscribers.c.listenbrainz_user == "")
    )
    return connection.execute(
        update(library_artists)
        .where(
            library_artists.c.source == LISTENBRAINZ,
            library_artists.c.unfollowed_on.is_(None),
            library_artists.c.subscriber_id.in_(unlinked),
        )
        .values(unfollowed_on=day)
    ).rowcount

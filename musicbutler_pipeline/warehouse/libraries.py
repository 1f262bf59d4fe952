"""Libraries: who follows which artist on a day, library statistics, and the follows synced
from ListenBrainz."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, func, or_, select, text, update

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


def library_summary(
    connection: Connection, day: date, limit: int = 10
) -> tuple[LibraryStats, list[tuple[str, int]]]:
    """The day's library statistics and its ``limit`` most followed artists (name, followers).

    Two statements, where there were four scans of ``library_artists`` and three sorts for its
    distinct counts: one pass grouping the follows by artist gives the follows, the distinct
    artists, the additions and removals of the day (window sums over the groups) and the top
    artists; the subscriber counts probe each subscriber's follows through the indexes (the
    current follows' unique index, and ``ix_library_artists_ended`` for ended ones).
    """
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if connection.dialect.name == "postgresql":
        # The grouping holds one entry per artist (~200,000): hash it in memory, not on disk.
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
    current = follows_on(day)
    per_artist = (
        select(
            func.min(library_artists.c.artist_name).filter(current).label("name"),
            func.count().filter(current).label("followers"),
            func.count()
            .filter(
                library_artists.c.followed_at >= start,
                library_artists.c.followed_at < start + timedelta(days=1),
            )
            .label("added"),
            func.count().filter(library_artists.c.unfollowed_on == day).label("removed"),
        )
        .group_by(library_artists.c.artist_mbid)
        .subquery("per_artist")
    )
    followers = per_artist.c.followers
    rows = connection.execute(
        select(
            per_artist.c.name,
            followers,
            func.count().filter(followers > 0).over().label("distinct_artists"),
            func.sum(followers).over().label("follows"),
            func.sum(per_artist.c.added).over().label("added"),
            func.sum(per_artist.c.removed).over().label("removed"),
        )
        .order_by(followers.desc(), per_artist.c.name)
        .limit(limit if limit > 0 else 1)
    ).all()
    follows_of = library_artists.alias("follows_of")
    has_current = (
        select(follows_of.c.id)
        .where(follows_of.c.subscriber_id == subscribers.c.id, follows_of.c.unfollowed_on.is_(None))
        .exists()
    )
    has_ended_later = (
        select(follows_of.c.id)
        .where(follows_of.c.subscriber_id == subscribers.c.id, follows_of.c.unfollowed_on > day)
        .exists()
    )
    people, active = connection.execute(
        select(
            func.count(),
            func.count().filter(subscribers.c.unsubscribed_at.is_(None)),
        ).where(or_(has_current, has_ended_later))
    ).one()
    if rows:
        head = rows[0]
        totals = (int(head.follows), head.distinct_artists, int(head.added), int(head.removed))
    else:
        totals = (0, 0, 0, 0)
    stats = LibraryStats(people, active, *totals)
    top = [(row.name, row.followers) for row in rows[:limit] if row.followers > 0]
    return stats, top


def library_stats(connection: Connection, day: date) -> LibraryStats:
    return library_summary(connection, day, limit=0)[0]


def top_followed_artists(
    connection: Connection, day: date, limit: int = 10
) -> list[tuple[str, int]]:
    return library_summary(connection, day, limit)[1]


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

"""Drops: which subscriber is owed which release group on a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, delete, exists, func, insert, literal, select

from musicbutler_pipeline.warehouse.libraries import follows_on
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    library_artists,
    release_group_artists,
    release_groups,
    subscribers,
)


def replace_drops(connection: Connection, day: date) -> int:
    """Recompute partition ``day``'s drops in one INSERT ... SELECT. Run inside a transaction.

    Each (subscriber, release group) appears once, under the followed artist credited first.
    Release groups announced to the subscriber on any other day are left out; those announced
    for this very day stay, so re-running an already-sent day reproduces the same drops.
    """
    connection.execute(delete(drops).where(drops.c.partition_date == day))
    already_announced = exists().where(
        announcements.c.subscriber_id == library_artists.c.subscriber_id,
        announcements.c.release_group_mbid == release_groups.c.mbid,
        announcements.c.partition_date != day,
    )
    rank = (
        func.row_number()
        .over(
            partition_by=(library_artists.c.subscriber_id, release_groups.c.mbid),
            order_by=(release_group_artists.c.position, library_artists.c.id),
        )
        .label("rank")
    )
    matches = (
        select(
            library_artists.c.subscriber_id,
            release_groups.c.mbid.label("release_group_mbid"),
            library_artists.c.artist_mbid,
            library_artists.c.artist_name,
            rank,
        )
        .select_from(
            release_groups.join(
                release_group_artists,
                release_group_artists.c.release_group_mbid == release_groups.c.mbid,
            )
            .join(
                library_artists,
                library_artists.c.artist_mbid == release_group_artists.c.artist_mbid,
            )
            .join(subscribers, subscribers.c.id == library_artists.c.subscriber_id)
        )
        .where(
            release_groups.c.partition_date == day,
            follows_on(day),
            subscribers.c.unsubscribed_at.is_(None),
            ~already_announced,
        )
        .subquery("matches")
    )
    result = connection.execute(
        insert(drops).from_select(
            ["partition_date", "subscriber_id", "release_group_mbid", "artist_mbid", "artist_name"],
            select(
                literal(day, type_=drops.c.partition_date.type),
                matches.c.subscriber_id,
                matches.c.release_group_mbid,
                matches.c.artist_mbid,
                matches.c.artist_name,
            ).where(matches.c.rank == 1),
        )
    )
    return result.rowcount


@dataclass(frozen=True, slots=True)
class DropStats:
    drops: int
    subscribers: int
    release_groups: int


def drop_stats(connection: Connection, day: date) -> DropStats:
    row = connection.execute(
        select(
            func.count(),
            func.count(func.distinct(drops.c.subscriber_id)),
            func.count(func.distinct(drops.c.release_group_mbid)),
        ).where(drops.c.partition_date == day)
    ).one()
    return DropStats(*row)

"""Set-based reads and idempotent partition writes over the warehouse tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)

from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    library_artists,
    release_group_artists,
    release_groups,
    sends,
    subscribers,
)

# SQLite allows 32,766 bound parameters per statement; stay well below it.
_CHUNK = 500


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


def replace_release_groups(
    connection: Connection,
    day: date,
    groups: Sequence[ReleaseGroup],
    *,
    source: str,
    fetched_at: datetime,
) -> None:
    """Replace partition ``day``'s release groups. Run inside the caller's transaction.

    A release group whose date moved to ``day`` leaves its old partition: the newest fetch wins.
    """
    connection.execute(delete(release_groups).where(release_groups.c.partition_date == day))
    mbids = [group.mbid for group in groups]
    for start in range(0, len(mbids), _CHUNK):
        chunk = mbids[start : start + _CHUNK]
        connection.execute(delete(release_groups).where(release_groups.c.mbid.in_(chunk)))
    if not groups:
        return
    connection.execute(
        insert(release_groups),
        [
            {
                "mbid": group.mbid,
                "partition_date": day,
                "title": group.title,
                "primary_type": group.primary_type,
                "secondary_types": ",".join(group.secondary_types),
                "first_release_date": group.first_release_date,
                "release_date": group.release_date,
                "artist_credit": group.credit,
                "source": source,
                "fetched_at": fetched_at,
            }
            for group in groups
        ],
    )
    connection.execute(
        insert(release_group_artists),
        [
            {
                "release_group_mbid": group.mbid,
                "position": position,
                "artist_mbid": artist.mbid,
                "artist_name": artist.name,
                "join_phrase": artist.join_phrase,
            }
            for group in groups
            for position, artist in enumerate(group.artists)
        ],
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


def iter_digests(engine: Engine, day: date, *, batch_size: int = 500) -> Iterator[Digest]:
    """Each subscriber's digest for ``day``, streamed in subscriber-id order.

    Reads in batches of subscribers (keyset pagination), each in its own short transaction, so
    memory stays flat in the number of subscribers and no long read blocks the ledger's writes.
    """
    last_id = 0
    while True:
        with engine.connect() as connection:
            batch_ids = (
                connection.execute(
                    select(drops.c.subscriber_id)
                    .where(drops.c.partition_date == day, drops.c.subscriber_id > last_id)
                    .group_by(drops.c.subscriber_id)
                    .order_by(drops.c.subscriber_id)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if not batch_ids:
                return
            rows = connection.execute(
                select(
                    subscribers.c.id.label("subscriber_id"),
                    subscribers.c.email,
                    subscribers.c.name.label("subscriber_name"),
                    subscribers.c.unsubscribed_at,
                    drops.c.artist_mbid.label("followed_mbid"),
                    drops.c.artist_name.label("followed_name"),
                    release_groups,
                    release_group_artists.c.position,
                    release_group_artists.c.artist_mbid,
                    release_group_artists.c.artist_name,
                    release_group_artists.c.join_phrase,
                )
                .select_from(
                    drops.join(subscribers, subscribers.c.id == drops.c.subscriber_id)
                    .join(release_groups, release_groups.c.mbid == drops.c.release_group_mbid)
                    .join(
                        release_group_artists,
                        release_group_artists.c.release_group_mbid == release_groups.c.mbid,
                    )
                )
                .where(
                    drops.c.partition_date == day,
                    drops.c.subscriber_id.in_(batch_ids),
                )
                .order_by(
                    drops.c.subscriber_id,
                    func.lower(drops.c.artist_name),
                    drops.c.artist_mbid,
                    release_groups.c.title,
                    release_groups.c.mbid,
                    release_group_artists.c.position,
                )
            ).all()
        last_id = batch_ids[-1]
        for _subscriber_id, subscriber_rows in groupby(rows, key=lambda row: row.subscriber_id):
            digest = _digest_from_rows(day, list(subscriber_rows))
            if digest is not None:
                yield digest


def _digest_from_rows(day: date, rows: list[Row[Any]]) -> Digest | None:
    first = rows[0]
    if first.unsubscribed_at is not None:
        return None  # unsubscribed after the drops were computed
    artists: list[DigestArtist] = []
    for (followed_mbid, followed_name), artist_rows in groupby(
        rows, key=lambda row: (row.followed_mbid, row.followed_name)
    ):
        groups = []
        for _mbid, credit_rows in groupby(artist_rows, key=lambda row: row.mbid):
            credit_rows = list(credit_rows)
            head = credit_rows[0]
            groups.append(
                ReleaseGroup(
                    mbid=head.mbid,
                    title=head.title,
                    primary_type=head.primary_type,
                    secondary_types=tuple(filter(None, head.secondary_types.split(","))),
                    first_release_date=head.first_release_date,
                    release_date=head.release_date,
                    artists=tuple(
                        CreditedArtist(row.artist_mbid, row.artist_name, row.join_phrase)
                        for row in credit_rows
                    ),
                )
            )
        artists.append(DigestArtist(followed_mbid, followed_name, tuple(groups)))
    return Digest(
        subscriber=Subscriber(first.subscriber_id, first.email, first.subscriber_name),
        partition_date=day,
        artists=tuple(artists),
    )


def owed_subscribers(connection: Connection, day: date) -> int:
    """Subscribers who have drops for ``day`` and are still subscribed."""
    return connection.execute(
        select(func.count(func.distinct(drops.c.subscriber_id)))
        .select_from(drops.join(subscribers, subscribers.c.id == drops.c.subscriber_id))
        .where(drops.c.partition_date == day, subscribers.c.unsubscribed_at.is_(None))
    ).scalar_one()


def unsubscribe(connection: Connection, subscriber_id: int) -> bool:
    """Opt a subscriber out; True if this changed anything."""
    now = datetime.now(UTC)
    result = connection.execute(
        subscribers.update()
        .where(and_(subscribers.c.id == subscriber_id, subscribers.c.unsubscribed_at.is_(None)))
        .values(unsubscribed_at=now, updated_at=now)
    )
    return result.rowcount == 1


def top_drops(connection: Connection, day: date, limit: int = 10) -> list[tuple[str, str, int]]:
    """The day's release groups owed to the most subscribers, for previews."""
    rows = connection.execute(
        select(release_groups.c.title, release_groups.c.artist_credit, func.count().label("n"))
        .select_from(
            drops.join(release_groups, release_groups.c.mbid == drops.c.release_group_mbid)
        )
        .where(drops.c.partition_date == day)
        .group_by(release_groups.c.mbid, release_groups.c.title, release_groups.c.artist_credit)
        .order_by(func.count().desc(), release_groups.c.title)
        .limit(limit)
    ).all()
    return [(title, credit, count) for title, credit, count in rows]


def unsent_owed(connection: Connection, day: date) -> list[tuple[str, str, str]]:
    """(recipient, ledger state or 'no send', error) for subscribed subscribers with drops for
    ``day`` whose email is not marked sent."""

    owed = (
        select(drops.c.subscriber_id)
        .where(drops.c.partition_date == day)
        .group_by(drops.c.subscriber_id)
        .subquery("owed")
    )
    rows = connection.execute(
        select(subscribers.c.email, sends.c.state, sends.c.error)
        .select_from(
            owed.join(subscribers, subscribers.c.id == owed.c.subscriber_id).outerjoin(
                sends,
                and_(sends.c.subscriber_id == owed.c.subscriber_id, sends.c.partition_date == day),
            )
        )
        .where(
            subscribers.c.unsubscribed_at.is_(None),
            or_(sends.c.state.is_(None), sends.c.state != "sent"),
        )
        .order_by(subscribers.c.email)
    ).all()
    return [(email, state or "no send", error or "") for email, state, error in rows]

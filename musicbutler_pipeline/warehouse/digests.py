"""Digests: each subscriber's drops of a day, read back as the email's content."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from itertools import groupby
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, and_, exists, func, select

from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ListenLink,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.domain.preferences import Frequency, week_start
from musicbutler_pipeline.domain.sends import SendState
from musicbutler_pipeline.warehouse.links import listen_links_of
from musicbutler_pipeline.warehouse.schema import (
    drops,
    release_group_artists,
    release_groups,
    sends,
    source_pages,
    subscriber_preferences,
    subscribers,
)

if TYPE_CHECKING:
    from musicbutler_pipeline.domain.shards import Shard


def iter_digests(
    engine: Engine,
    day: date,
    *,
    batch_size: int = 500,
    shard: Shard | None = None,
    skip_settled: bool = False,
) -> Iterator[Digest]:
    """Each subscriber's digest for ``day``, streamed in subscriber-id order; with ``shard``,
    only its subscribers (id modulo the shard count, in the query).

    ``skip_settled`` leaves out, in SQL, subscribers whose email of the day the send ledger has
    already settled or someone holds (any row but a retryable failure), so a rerun of a sent day
    reads nothing it would not send. The ledger's claim stays the guarantee: a row written after
    a batch is read is still caught there.

    Reads in batches of subscribers (keyset pagination), each in its own short transaction, so
    memory stays flat in the number of subscribers and no long read holds back the ledger's
    writes. (On SQLite every transaction, reads included, begins IMMEDIATE, so each batch read
    briefly queues the ledger's writes; on PostgreSQL reads never block them.)
    """
    last_id = 0
    while True:
        with engine.connect() as connection:
            batch_ids = (
                connection.execute(
                    select(drops.c.subscriber_id)
                    .where(
                        drops.c.partition_date == day,
                        drops.c.subscriber_id > last_id,
                        *_in_shard(shard),
                    )
                    .where(*([~_settled(day)] if skip_settled else []))
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
                    subscriber_preferences.c.frequency,
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
                    .outerjoin(
                        subscriber_preferences,
                        subscriber_preferences.c.subscriber_id == drops.c.subscriber_id,
                    )
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
            unchecked = _unchecked_days(connection, {row.release_date for row in rows}, day)
            links = _listen_links(connection, day, batch_ids)
        last_id = batch_ids[-1]
        for _subscriber_id, subscriber_rows in groupby(rows, key=lambda row: row.subscriber_id):
            digest = _digest_from_rows(day, list(subscriber_rows), unchecked, links)
            if digest is not None:
                yield digest


def _in_shard(shard: Shard | None) -> tuple[ColumnElement[bool], ...]:
    """The WHERE term that keeps ``shard``'s subscribers; none for the whole day."""
    if shard is None or shard.is_whole_day:
        return ()
    return (drops.c.subscriber_id % shard.count == shard.index,)


def _settled(day: date) -> ColumnElement[bool]:
    """The drop's subscriber has a send row for ``day`` that no run may claim again."""
    retryable = and_(sends.c.state == SendState.FAILED, sends.c.permanent_failure.is_(False))
    return exists().where(
        sends.c.partition_date == day,
        sends.c.subscriber_id == drops.c.subscriber_id,
        ~retryable,
    )


def _unchecked_days(
    connection: Connection, release_dates: set[date | None], day: date
) -> frozenset[date]:
    """The release dates before ``day`` whose own partition has no fetched pages: its run never
    happened (or its pages were pruned), so a release dated then was not necessarily late in
    MusicBrainz. A day whose pages exist fetched without the release: it was added late."""
    earlier = sorted(d for d in release_dates if d is not None and d < day)
    if not earlier:
        return frozenset()
    fetched = set(
        connection.execute(
            select(source_pages.c.partition_date)
            .where(source_pages.c.partition_date.in_(earlier))
            .group_by(source_pages.c.partition_date)
        ).scalars()
    )
    return frozenset(d for d in earlier if d not in fetched)


def _listen_links(
    connection: Connection, day: date, subscriber_ids: Sequence[int]
) -> dict[str, tuple[ListenLink, ...]]:
    """The listen links of the release groups owed to ``subscriber_ids`` on ``day``."""
    return listen_links_of(
        connection,
        select(drops.c.release_group_mbid).where(
            drops.c.partition_date == day, drops.c.subscriber_id.in_(subscriber_ids)
        ),
    )


def _digest_from_rows(
    day: date,
    rows: list[Row[Any]],
    unchecked_days: frozenset[date],
    links: dict[str, tuple[ListenLink, ...]] | None = None,
) -> Digest | None:
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
        unchecked_days=frozenset(
            d for d in unchecked_days if any(row.release_date == d for row in rows)
        ),
        listen_links={
            mbid: links[mbid] for mbid in {row.mbid for row in rows} if links and mbid in links
        },
        # A weekly subscriber has drops only on their weekday, covering the week up to it
        # (warehouse/drops.py::replace_drops).
        week_of=week_start(day) if first.frequency == Frequency.WEEKLY else None,
    )

"""Subscriber feeds: the feed secrets (``feed_tokens``) and what was announced to whom.

A feed secret is 32 random URL-safe characters (192 bits, ``secrets.token_urlsafe``), made the
first time a subscriber's feed URLs are needed and replaced on ``--rotate``. It is the only
thing that lets anybody read a feed, so it is never logged.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, exists, select, update

from musicbutler_pipeline.domain.feeds import FeedRelease, SubscriberFeed
from musicbutler_pipeline.warehouse.dialect import PARAMETER_CHUNK, as_utc, upsert_insert
from musicbutler_pipeline.warehouse.links import listen_links_of
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    feed_tokens,
    release_groups,
    subscribers,
)

# What new_secret() makes; anything else cannot be a feed secret and is refused unread.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{32}$")

Clock = Callable[[], datetime]


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _insert_missing(connection: Connection, subscriber_ids: list[int], now: datetime) -> None:
    """A secret for each of these subscribers that has none; a concurrent insert wins."""
    for start in range(0, len(subscriber_ids), PARAMETER_CHUNK):
        chunk = subscriber_ids[start : start + PARAMETER_CHUNK]
        connection.execute(
            upsert_insert(connection, feed_tokens).on_conflict_do_nothing(),
            [{"subscriber_id": sid, "token": new_secret(), "created_at": now} for sid in chunk],
        )


def feed_secret(
    engine: Engine, subscriber_id: int, *, rotate: bool = False, clock: Clock = _utc_now
) -> str:
    """The subscriber's feed secret, made if they have none; ``rotate`` replaces it (the old
    URLs then answer 404)."""
    with engine.begin() as connection:
        now = clock()
        if rotate:
            connection.execute(
                update(feed_tokens)
                .where(feed_tokens.c.subscriber_id == subscriber_id)
                .values(token=new_secret(), created_at=now)
            )
        _insert_missing(connection, [subscriber_id], now)
        return connection.execute(
            select(feed_tokens.c.token).where(feed_tokens.c.subscriber_id == subscriber_id)
        ).scalar_one()


def feed_secrets_for_day(engine: Engine, day: date, *, clock: Clock = _utc_now) -> dict[int, str]:
    """The feed secret of every subscriber with drops on ``day`` (the digests' footers link
    the feeds), made for those who have none: one anti-join, inserts in chunks, one read."""
    owed = select(drops.c.subscriber_id).where(drops.c.partition_date == day).distinct()
    with engine.begin() as connection:
        missing = (
            connection.execute(
                owed.where(~exists().where(feed_tokens.c.subscriber_id == drops.c.subscriber_id))
            )
            .scalars()
            .all()
        )
        _insert_missing(connection, sorted(missing), clock())
        rows = connection.execute(
            select(feed_tokens.c.subscriber_id, feed_tokens.c.token).where(
                feed_tokens.c.subscriber_id.in_(owed)
            )
        ).all()
    return {row.subscriber_id: row.token for row in rows}


def read_feed(engine: Engine, secret: str, *, since: date) -> SubscriberFeed | None:
    """What was announced to the holder of ``secret`` on digest days ``since`` onwards; None for
    a secret nobody holds (or no longer: rotated) and for a person who unsubscribed."""
    if _SECRET.match(secret) is None:
        return None
    with engine.connect() as connection:
        subscriber_id = connection.execute(
            select(subscribers.c.id)
            .join(feed_tokens, feed_tokens.c.subscriber_id == subscribers.c.id)
            .where(feed_tokens.c.token == secret, subscribers.c.unsubscribed_at.is_(None))
        ).scalar_one_or_none()
        if subscriber_id is None:
            return None
        rows = connection.execute(
            select(
                release_groups.c.mbid,
                release_groups.c.title,
                release_groups.c.artist_credit,
                release_groups.c.primary_type,
                release_groups.c.secondary_types,
                release_groups.c.release_date,
                release_groups.c.first_release_date,
                announcements.c.partition_date,
                announcements.c.announced_at,
            )
            .join(release_groups, release_groups.c.mbid == announcements.c.release_group_mbid)
            .where(
                announcements.c.subscriber_id == subscriber_id,
                announcements.c.partition_date >= since,
            )
            .order_by(announcements.c.announced_at, release_groups.c.mbid)
        ).all()
        announced = select(announcements.c.release_group_mbid).where(
            announcements.c.subscriber_id == subscriber_id,
            announcements.c.partition_date >= since,
        )
        links = listen_links_of(connection, announced)
    releases = tuple(
        FeedRelease(
            mbid=row.mbid,
            title=row.title,
            artist_credit=row.artist_credit,
            type_label=" + ".join(
                [row.primary_type or "Other", *filter(None, row.secondary_types.split(","))]
            ),
            release_date=row.release_date,
            first_release_date=row.first_release_date,
            partition_date=row.partition_date,
            announced_at=as_utc(row.announced_at),
            listen_links=links.get(row.mbid, ()),
        )
        for row in rows
    )
    return SubscriberFeed(subscriber_id=subscriber_id, secret=secret, releases=releases)

"""Subscribers: one per mailbox, found by address case-insensitively, and opted out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, or_, select

from musicbutler_pipeline.domain.rules import email_key
from musicbutler_pipeline.warehouse.dialect import PARAMETER_CHUNK
from musicbutler_pipeline.warehouse.schema import subscriber_merges, subscribers


@dataclass(frozen=True, slots=True)
class KnownSubscriber:
    id: int
    email: str
    unsubscribed_at: datetime | None


def subscribers_by_address(
    connection: Connection, addresses: Iterable[str]
) -> dict[str, KnownSubscriber]:
    """The subscribers with these addresses, keyed by ``email_key`` (so ``Bob@Example.com``
    finds the subscriber stored as ``bob@example.com``); addresses nobody has are left out."""
    keys = sorted({email_key(address) for address in addresses})
    found: dict[str, KnownSubscriber] = {}
    for start in range(0, len(keys), PARAMETER_CHUNK):
        rows = connection.execute(
            select(
                subscribers.c.email_key,
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.unsubscribed_at,
            ).where(subscribers.c.email_key.in_(keys[start : start + PARAMETER_CHUNK]))
        )
        for key, subscriber_id, email, unsubscribed_at in rows:
            found[key] = KnownSubscriber(subscriber_id, email, unsubscribed_at)
    return found


def subscriber_by_id(connection: Connection, subscriber_id: int) -> KnownSubscriber | None:
    """The subscriber with this id, or the one it was merged into (links in emails sent before
    a merge carry the old id; see ``subscriber_merges``)."""
    survivor = (
        select(subscriber_merges.c.survivor_id)
        .where(subscriber_merges.c.merged_id == subscriber_id)
        .scalar_subquery()
    )
    row = connection.execute(
        select(subscribers.c.id, subscribers.c.email, subscribers.c.unsubscribed_at)
        .where(or_(subscribers.c.id == subscriber_id, subscribers.c.id == survivor))
        .order_by(subscribers.c.id != subscriber_id)
        .limit(1)
    ).one_or_none()
    return None if row is None else KnownSubscriber(row.id, row.email, row.unsubscribed_at)


def unsubscribe(connection: Connection, subscriber_id: int) -> bool:
    """Opt a subscriber out (or the one it was merged into); True if this changed anything."""
    subscriber = subscriber_by_id(connection, subscriber_id)
    if subscriber is None:
        return False
    now = datetime.now(UTC)
    result = connection.execute(
        subscribers.update()
        .where(and_(subscribers.c.id == subscriber.id, subscribers.c.unsubscribed_at.is_(None)))
        .values(unsubscribed_at=now, updated_at=now)
    )
    return result.rowcount == 1


def find_subscribers(engine: Engine, addresses: Iterable[str]) -> dict[str, KnownSubscriber]:
    """``subscribers_by_address`` in a short read of its own."""
    with engine.connect() as connection:
        return subscribers_by_address(connection, addresses)


def unsubscribe_address(engine: Engine, address: str) -> tuple[KnownSubscriber, bool] | None:
    """Opt out the subscriber with this address, in one transaction: the subscriber and whether
    this changed anything, or None if nobody has the address."""
    with engine.begin() as connection:
        subscriber = subscribers_by_address(connection, [address]).get(email_key(address))
        if subscriber is None:
            return None
        return subscriber, unsubscribe(connection, subscriber.id)


def find_subscriber_by_id(engine: Engine, subscriber_id: int) -> KnownSubscriber | None:
    """``subscriber_by_id`` in a short read of its own."""
    with engine.connect() as connection:
        return subscriber_by_id(connection, subscriber_id)


def unsubscribe_by_id(engine: Engine, subscriber_id: int) -> bool:
    """``unsubscribe`` in a transaction of its own: whether this changed anything."""
    with engine.begin() as connection:
        return unsubscribe(connection, subscriber_id)

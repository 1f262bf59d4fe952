"""Health queries across drops and sends: what a day owes, what is still unsent, and the
announce-once rule checked."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, and_, case, func, literal, or_, select

from musicbutler_pipeline.warehouse.schema import drops, release_groups, sends, subscribers


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


def unsent_owed(connection: Connection, since: date) -> list[tuple[date, str, str, str]]:
    """(day, recipient, state, error) for every subscribed subscriber with drops on a day from
    ``since`` on whose email is not marked sent. State is the ledger's, 'rejected' for a permanent
    failure, or 'no send'."""
    owed = (
        select(drops.c.partition_date, drops.c.subscriber_id)
        .where(drops.c.partition_date >= since)
        .group_by(drops.c.partition_date, drops.c.subscriber_id)
        .subquery("owed")
    )
    rows = connection.execute(
        select(
            owed.c.partition_date,
            subscribers.c.email,
            case((sends.c.permanent_failure, literal("rejected")), else_=sends.c.state),
            sends.c.error,
        )
        .select_from(
            owed.join(subscribers, subscribers.c.id == owed.c.subscriber_id).outerjoin(
                sends,
                and_(
                    sends.c.subscriber_id == owed.c.subscriber_id,
                    sends.c.partition_date == owed.c.partition_date,
                ),
            )
        )
        .where(
            subscribers.c.unsubscribed_at.is_(None),
            or_(sends.c.state.is_(None), sends.c.state != "sent"),
        )
        .order_by(owed.c.partition_date, subscribers.c.email)
    ).all()
    return [(day, email, state or "no send", error or "") for day, email, state, error in rows]


def release_groups_sent_twice(connection: Connection) -> list[tuple[str, str, str]]:
    """(recipient, release group, days) for release groups listed in two sent emails to the same
    subscriber: the announce-once rule broken."""
    sent_drops = (
        select(drops.c.subscriber_id, drops.c.release_group_mbid, drops.c.partition_date)
        .select_from(
            drops.join(
                sends,
                and_(
                    sends.c.subscriber_id == drops.c.subscriber_id,
                    sends.c.partition_date == drops.c.partition_date,
                    sends.c.state == "sent",
                ),
            )
        )
        .subquery("sent_drops")
    )
    rows = connection.execute(
        select(
            subscribers.c.email,
            sent_drops.c.release_group_mbid,
            func.count(func.distinct(sent_drops.c.partition_date)),
        )
        .select_from(sent_drops.join(subscribers, subscribers.c.id == sent_drops.c.subscriber_id))
        .group_by(subscribers.c.email, sent_drops.c.release_group_mbid)
        .having(func.count(func.distinct(sent_drops.c.partition_date)) > 1)
    ).all()
    return [(email, mbid, str(days)) for email, mbid, days in rows]

"""Health queries across drops and sends: the day's most owed release groups, and the
announce-once rule checked. (What is owed but unsent is the ledger's: warehouse/ledger.py.)"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, and_, func, select

from musicbutler_pipeline.domain.sends import SendState
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
                    sends.c.state == SendState.SENT,
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

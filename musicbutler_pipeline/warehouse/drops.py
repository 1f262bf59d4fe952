"""Drops: which subscriber is owed which release group on a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import (
    ColumnElement,
    Connection,
    Subquery,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
)

from musicbutler_pipeline.domain.preferences import (
    DEFAULT_RELEASE_TYPES,
    PRIMARY_KINDS,
    SECONDARY_KINDS,
    WEEKDAYS,
    Frequency,
    ReleaseType,
    week_start,
)
from musicbutler_pipeline.warehouse.libraries import follows_on
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    blocked_artists,
    drop_exclusions,
    drops,
    library_artists,
    release_group_artists,
    release_groups,
    subscriber_preferences,
    subscribers,
)


def replace_drops(connection: Connection, day: date) -> int:
    """Recompute partition ``day``'s drops and their exclusions, in a few set-based statements.
    Run inside a transaction.

    Each (subscriber, release group) appears once, under the followed artist credited first
    among those that pass the subscriber's preferences (domain.preferences): every kind of the
    release group selected; with appearances off, only an artist credited first counts; a blocked
    artist never counts. Release groups announced to the subscriber on any other day are left
    out; those announced for this very day stay, so re-running an already-sent day reproduces the
    same drops. A weekly subscriber has drops only on their weekday, for the release groups of
    that day and the six before it (``weekly_pending`` on the other days).

    Every followed artist's release group that is left out is in ``drop_exclusions`` with the
    reason, replaced with the day's drops.
    """
    connection.execute(delete(drops).where(drops.c.partition_date == day))
    connection.execute(delete(drop_exclusions).where(drop_exclusions.c.partition_date == day))
    candidates = _candidates(day)
    passing = (
        select(
            candidates.c.subscriber_id,
            candidates.c.release_group_mbid,
            candidates.c.artist_mbid,
            candidates.c.artist_name,
            func.row_number()
            .over(
                partition_by=(candidates.c.subscriber_id, candidates.c.release_group_mbid),
                order_by=(candidates.c.position, candidates.c.follow_id),
            )
            .label("rank"),
        )
        .where(candidates.c.reason.is_(None))
        .subquery("passing")
    )
    result = connection.execute(
        insert(drops).from_select(
            ["partition_date", "subscriber_id", "release_group_mbid", "artist_mbid", "artist_name"],
            select(
                literal(day, type_=drops.c.partition_date.type),
                passing.c.subscriber_id,
                passing.c.release_group_mbid,
                passing.c.artist_mbid,
                passing.c.artist_name,
            ).where(passing.c.rank == 1),
        )
    )
    # One row per (subscriber, release group, followed artist) whose every credit was left out
    # (an artist credited twice, or followed twice over the day, has several candidate rows).
    connection.execute(
        insert(drop_exclusions).from_select(
            ["partition_date", "subscriber_id", "release_group_mbid", "artist_mbid", "reason"],
            select(
                literal(day, type_=drop_exclusions.c.partition_date.type),
                candidates.c.subscriber_id,
                candidates.c.release_group_mbid,
                candidates.c.artist_mbid,
                func.min(candidates.c.reason),
            )
            .group_by(
                candidates.c.subscriber_id,
                candidates.c.release_group_mbid,
                candidates.c.artist_mbid,
            )
            .having(func.count(candidates.c.reason) == func.count()),
        )
    )
    return result.rowcount


def _candidates(day: date) -> Subquery:
    """Every (subscriber, release group, followed credited artist) the day could announce, with
    the reason it is left out, or NULL when it is not."""
    prefs = subscriber_preferences.c
    frequency = func.coalesce(prefs.frequency, Frequency.DAILY.value)
    weekday = WEEKDAYS[day.weekday()]
    weekly_today = and_(frequency == Frequency.WEEKLY.value, prefs.weekday == weekday)
    weekly_pending = and_(frequency == Frequency.WEEKLY.value, ~weekly_today)
    already_announced = exists().where(
        announcements.c.subscriber_id == library_artists.c.subscriber_id,
        announcements.c.release_group_mbid == release_groups.c.mbid,
        announcements.c.partition_date != day,
    )
    blocked = exists().where(
        blocked_artists.c.subscriber_id == library_artists.c.subscriber_id,
        blocked_artists.c.artist_mbid == library_artists.c.artist_mbid,
    )
    appearance_only = and_(
        func.coalesce(prefs.appearances, true()).is_(false()),
        release_group_artists.c.position != 0,
    )
    reason = case(
        (~_types_selected(), literal("type_filtered")),
        (blocked, literal("blocked")),
        (appearance_only, literal("appearance")),
        (already_announced, literal("already_announced")),
        (weekly_pending, literal("weekly_pending")),
        else_=null(),
    )
    return (
        select(
            library_artists.c.subscriber_id,
            release_groups.c.mbid.label("release_group_mbid"),
            library_artists.c.artist_mbid,
            library_artists.c.artist_name,
            library_artists.c.id.label("follow_id"),
            release_group_artists.c.position,
            reason.label("reason"),
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
            .outerjoin(
                subscriber_preferences,
                subscriber_preferences.c.subscriber_id == library_artists.c.subscriber_id,
            )
        )
        .where(
            # The index on partition_date bounds the scan to the week; daily subscribers and
            # weekly ones on other days take only the day's own release groups.
            release_groups.c.partition_date.between(week_start(day), day),
            or_(release_groups.c.partition_date == day, weekly_today),
            follows_on(day),
            subscribers.c.unsubscribed_at.is_(None),
        )
        .subquery("candidates")
    )


def _types_selected() -> ColumnElement[bool]:
    """True when every kind of the release group (see domain.preferences.release_kinds) is one
    the subscriber selected; no preferences row selects the default kinds (all but broadcast)."""
    primary = func.lower(func.coalesce(release_groups.c.primary_type, ""))
    # ",compilation,live," : each secondary type between commas, so LIKE matches whole names.
    secondary = literal(",") + func.lower(release_groups.c.secondary_types) + literal(",")
    has_kind: dict[ReleaseType, ColumnElement[bool]] = {
        kind: primary.in_([name for name, of in PRIMARY_KINDS.items() if of is kind])
        for kind in set(PRIMARY_KINDS.values())
    }
    has_kind.update({kind: secondary.like(f"%,{name},%") for name, kind in SECONDARY_KINDS.items()})
    # Secondary types other than the named ones: what is left once those are removed.
    rest = secondary
    for name in SECONDARY_KINDS:
        rest = func.replace(rest, f",{name},", ",")
    # No primary type (or one MusicBrainz adds later) is "other", like the other secondary types.
    has_kind[ReleaseType.OTHER] = or_(
        primary.not_in(list(PRIMARY_KINDS)), func.replace(rest, ",", "") != ""
    )
    return and_(
        *(
            or_(
                ~has_kind[kind],
                func.coalesce(
                    subscriber_preferences.c[kind.value],
                    true() if kind in DEFAULT_RELEASE_TYPES else false(),
                ),
            )
            for kind in ReleaseType
        )
    )


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


def exclusion_counts(connection: Connection, day: date) -> dict[str, int]:
    """How many (subscriber, release group, followed artist) the day left out, by reason."""
    rows = connection.execute(
        select(drop_exclusions.c.reason, func.count())
        .where(drop_exclusions.c.partition_date == day)
        .group_by(drop_exclusions.c.reason)
        .order_by(drop_exclusions.c.reason)
    ).all()
    return {reason: count for reason, count in rows}

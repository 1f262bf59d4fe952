"""Drops: which subscriber is owed which release group on a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Column,
    ColumnElement,
    Connection,
    Executable,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
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
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

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
    ID,
    MBID,
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

# The day's candidates, computed once per replace_drops and read by the statements that write
# the drops and the exclusions (two INSERTs used to re-evaluate the whole join with its per-row
# CASE and EXISTS each: measured at 100,000 subscribers, 1.8-2.8 times as slow as one pass).
# TEMPORARY: private to the connection, created and dropped inside the caller's transaction (a
# rollback takes it away too, on both dialects). Filled by
# CREATE TABLE ... AS, which PostgreSQL plans in parallel (an INSERT ... SELECT never is); this
# Table, in its own MetaData and never migrated, names its columns for the statements reading it.
_scratch = MetaData()
day_candidates = Table(
    "drop_candidates",
    _scratch,
    Column("subscriber_id", ID, nullable=False),
    Column("release_group_mbid", MBID, nullable=False),
    Column("artist_mbid", MBID, nullable=False),
    Column("artist_name", Text, nullable=False),
    Column("follow_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    Column("reason", String(32)),
    prefixes=["TEMPORARY"],
)
# The day's drops as computed, keyed like a partition of ``drops``: the partition is then brought
# to it by deleting the rows that differ and inserting the missing ones. A rerun whose inputs did
# not change writes nothing (re-inserting ~450,000 identical rows, each checked against the
# subscriber foreign key and against its own deleted version in the unique index, was most of a
# rerun's user_drops: measured at 100,000 subscribers).
# Filled by CREATE TABLE ... AS, then indexed in one sort (the comparison with the partition is
# a correlated subquery on SQLite, which would otherwise scan the table for every row).
day_drops = Table(
    "drop_results",
    _scratch,
    Column("subscriber_id", ID, nullable=False),
    Column("release_group_mbid", MBID, nullable=False),
    Column("artist_mbid", MBID, nullable=False),
    Column("artist_name", Text, nullable=False),
    prefixes=["TEMPORARY"],
)
day_drops_key = Index(
    "uq_drop_results", day_drops.c.subscriber_id, day_drops.c.release_group_mbid, unique=True
)


class _CreateTemporaryTableAs(Executable, ClauseElement):
    """``CREATE TEMPORARY TABLE name AS query``, with the query's bound parameters."""

    inherit_cache = False

    def __init__(self, table: Table, query: Select[Any]) -> None:
        self.table = table
        self.query = query


@compiles(_CreateTemporaryTableAs)
def _create_temporary_table_as(
    element: _CreateTemporaryTableAs, compiler: SQLCompiler, **kw: Any
) -> str:
    name = compiler.preparer.format_table(element.table)
    return f"CREATE TEMPORARY TABLE {name} AS {compiler.process(element.query, **kw)}"


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
    reason, replaced with the day's drops. The candidates are computed once, into a temporary
    table the drops and the exclusions are both read from; the partition's drops are then
    brought to the result, rows that differ deleted and missing ones inserted, so a rerun that
    changes nothing writes no drop. Returns the number of the day's drops.
    """
    if connection.dialect.name == "postgresql":
        # The candidates' CASE is large enough that PostgreSQL's JIT compiles it: measured at 8
        # of the 12 s of their query at 100,000 subscribers; interpreted, it is cheap. The
        # sorts of the day's candidates (~450,000 rows, ~50 MB) fit in memory instead of disk.
        connection.execute(text("SET LOCAL jit = off"))
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
    connection.execute(_CreateTemporaryTableAs(day_candidates, _candidates(day)))
    candidates = day_candidates
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
    result_columns = ["subscriber_id", "release_group_mbid", "artist_mbid", "artist_name"]
    connection.execute(
        _CreateTemporaryTableAs(
            day_drops,
            select(*(passing.c[name] for name in result_columns)).where(passing.c.rank == 1),
        )
    )
    day_drops_key.create(connection)
    if connection.dialect.name == "postgresql":
        # A table made by CREATE TABLE ... AS has no statistics until analyzed: the planner would
        # take it for a few rows and probe it row by row.
        connection.execute(text(f"ANALYZE {day_drops.name}"))
    count = connection.execute(select(func.count()).select_from(day_drops)).scalar_one()
    # The partition's rows that differ from the result go; the result's rows the partition has
    # go from the result; what is left is inserted. No statement reads the table it writes (an
    # INSERT probing drops for each of its own rows degenerated to a scan per row on a partition
    # the planner took for empty).
    connection.execute(
        delete(drops).where(
            drops.c.partition_date == day,
            ~exists().where(
                day_drops.c.subscriber_id == drops.c.subscriber_id,
                day_drops.c.release_group_mbid == drops.c.release_group_mbid,
                day_drops.c.artist_mbid == drops.c.artist_mbid,
                day_drops.c.artist_name == drops.c.artist_name,
            ),
        )
    )
    connection.execute(
        delete(day_drops).where(
            exists().where(
                drops.c.partition_date == day,
                drops.c.subscriber_id == day_drops.c.subscriber_id,
                drops.c.release_group_mbid == day_drops.c.release_group_mbid,
            )
        )
    )
    connection.execute(
        insert(drops).from_select(
            ["partition_date", *result_columns],
            select(
                literal(day, type_=drops.c.partition_date.type),
                *(day_drops.c[name] for name in result_columns),
            ),
        )
    )
    connection.execute(delete(drop_exclusions).where(drop_exclusions.c.partition_date == day))
    # One row per (subscriber, release group, followed artist) whose every credit was left out
    # (an artist credited twice, or followed twice over the day, has several candidate rows).
    # Only the keys with some reason are grouped: usually a few percent of the candidates.
    key = ("subscriber_id", "release_group_mbid", "artist_mbid")
    left_out = (
        select(*(candidates.c[name] for name in key))
        .where(candidates.c.reason.is_not(None))
        .distinct()
        .subquery("left_out")
    )
    connection.execute(
        insert(drop_exclusions).from_select(
            ["partition_date", *key, "reason"],
            select(
                literal(day, type_=drop_exclusions.c.partition_date.type),
                *(candidates.c[name] for name in key),
                func.min(candidates.c.reason),
            )
            .select_from(
                candidates.join(
                    left_out, and_(*(candidates.c[name] == left_out.c[name] for name in key))
                )
            )
            .group_by(*(candidates.c[name] for name in key))
            .having(func.count(candidates.c.reason) == func.count()),
        )
    )
    day_drops.drop(connection)
    day_candidates.drop(connection)
    return count


def _candidates(day: date) -> Select[Any]:
    """Every (subscriber, release group, followed credited artist) the day could announce, with
    the reason it is left out, or NULL when it is not."""
    prefs = subscriber_preferences.c
    frequency = func.coalesce(prefs.frequency, Frequency.DAILY.value)
    weekday = WEEKDAYS[day.weekday()]
    weekly_today = and_(frequency == Frequency.WEEKLY.value, prefs.weekday == weekday)
    weekly_pending = and_(frequency == Frequency.WEEKLY.value, ~weekly_today)
    # Outer joins, not EXISTS: each matches at most one row (primary keys), and a join is planned
    # set-based (hashed, or probed through the key) and parallel-safe, where a correlated EXISTS
    # in the select list is one subplan run per candidate row, above the parallel workers.
    announced = and_(
        announcements.c.subscriber_id == library_artists.c.subscriber_id,
        announcements.c.release_group_mbid == release_groups.c.mbid,
        announcements.c.partition_date != day,
    )
    already_announced = announcements.c.subscriber_id.is_not(None)
    blocked = blocked_artists.c.subscriber_id.is_not(None)
    appearance_only = and_(
        func.coalesce(prefs.appearances, true()).is_(false()),
        release_group_artists.c.position != 0,
    )
    kinds = _release_kinds()
    with_preferences = case(
        (~_types_selected(kinds), literal("type_filtered")),
        (blocked, literal("blocked")),
        (appearance_only, literal("appearance")),
        (already_announced, literal("already_announced")),
        (weekly_pending, literal("weekly_pending")),
        else_=null(),
    )
    # Without a preferences row the default types are selected, appearances count and the
    # frequency is daily: beside one cheap test for a kind outside the defaults (broadcasts),
    # only the block list and the announcements can leave a candidate out. Most subscribers
    # have no row, and the full type test is most of the CASE's cost per row.
    reason = case(
        (
            prefs.subscriber_id.is_(None),
            case(
                (_has_kind_outside_the_defaults(kinds), literal("type_filtered")),
                (blocked, literal("blocked")),
                (already_announced, literal("already_announced")),
                else_=null(),
            ),
        ),
        else_=with_preferences,
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
            .outerjoin(
                blocked_artists,
                and_(
                    blocked_artists.c.subscriber_id == library_artists.c.subscriber_id,
                    blocked_artists.c.artist_mbid == library_artists.c.artist_mbid,
                ),
            )
            .outerjoin(announcements, announced)
        )
        .where(
            # The index on partition_date bounds the scan to the week; daily subscribers and
            # weekly ones on other days take only the day's own release groups.
            release_groups.c.partition_date.between(week_start(day), day),
            or_(release_groups.c.partition_date == day, weekly_today),
            follows_on(day),
            subscribers.c.unsubscribed_at.is_(None),
        )
    )


def _release_kinds() -> dict[ReleaseType, ColumnElement[bool]]:
    """For each kind, whether the release group has it (domain.preferences.release_kinds in
    SQL)."""
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
    return has_kind


def _has_kind_outside_the_defaults(
    has_kind: dict[ReleaseType, ColumnElement[bool]],
) -> ColumnElement[bool]:
    return or_(*(has_kind[kind] for kind in ReleaseType if kind not in DEFAULT_RELEASE_TYPES))


def _types_selected(has_kind: dict[ReleaseType, ColumnElement[bool]]) -> ColumnElement[bool]:
    """True when every kind of the release group is one the subscriber selected; no
    preferences row (or a NULL column) selects the default kinds (all but broadcast)."""
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

"""Subscriber preferences in the warehouse: read, change, block and unblock artists.

A subscriber without a ``subscriber_preferences`` row has ``Preferences()`` (the defaults); the
blocked artists live in ``blocked_artists``, apart from the library, so no import or sync
touches them. replace_drops (warehouse/drops.py) reads both tables in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, false, func, select, true

from musicbutler_pipeline.domain.preferences import (
    DEFAULT_RELEASE_TYPES,
    Frequency,
    PreferenceChanges,
    PreferenceError,
    Preferences,
    ReleaseType,
)
from musicbutler_pipeline.warehouse.dialect import PARAMETER_CHUNK, upsert_insert
from musicbutler_pipeline.warehouse.schema import (
    RELEASE_TYPE_COLUMNS,
    blocked_artists,
    library_artists,
    release_group_artists,
    subscriber_preferences,
    subscribers,
)
from musicbutler_pipeline.warehouse.subscribers import subscribers_by_address


class UnknownSubscriber(PreferenceError):
    """No subscriber has that address."""


def preferences_of(connection: Connection, subscriber_ids: Iterable[int]) -> dict[int, Preferences]:
    """Each subscriber's preferences (the defaults when they never chose any)."""
    ids = sorted(set(subscriber_ids))
    found = {subscriber_id: Preferences() for subscriber_id in ids}
    blocked: dict[int, set[str]] = {}
    for start in range(0, len(ids), PARAMETER_CHUNK):
        chunk = ids[start : start + PARAMETER_CHUNK]
        for subscriber_id, artist_mbid in connection.execute(
            select(blocked_artists.c.subscriber_id, blocked_artists.c.artist_mbid).where(
                blocked_artists.c.subscriber_id.in_(chunk)
            )
        ):
            blocked.setdefault(subscriber_id, set()).add(artist_mbid)
        rows = connection.execute(
            select(subscriber_preferences).where(subscriber_preferences.c.subscriber_id.in_(chunk))
        ).all()
        for row in rows:
            columns = row._mapping
            found[row.subscriber_id] = Preferences(
                release_types=frozenset(
                    ReleaseType(name) for name in RELEASE_TYPE_COLUMNS if columns[name]
                ),
                appearances=bool(row.appearances),
                frequency=Frequency(row.frequency),
                weekday=row.weekday,
            )
    return {
        subscriber_id: Preferences(
            release_types=preferences.release_types,
            appearances=preferences.appearances,
            frequency=preferences.frequency,
            weekday=preferences.weekday,
            blocked_artists=frozenset(blocked.get(subscriber_id, ())),
        )
        for subscriber_id, preferences in found.items()
    }


def save_preferences(
    connection: Connection, chosen: Mapping[int, Preferences], *, now: datetime | None = None
) -> None:
    """Store these subscribers' preferences, replacing what they had (blocked artists too).
    A few set-based statements per chunk of subscribers; run inside a transaction."""
    now = now or datetime.now(UTC)
    ids = sorted(chosen)
    for start in range(0, len(ids), PARAMETER_CHUNK):
        chunk = ids[start : start + PARAMETER_CHUNK]
        rows = [
            {
                "subscriber_id": subscriber_id,
                **{
                    name: ReleaseType(name) in chosen[subscriber_id].release_types
                    for name in RELEASE_TYPE_COLUMNS
                },
                "appearances": chosen[subscriber_id].appearances,
                "frequency": chosen[subscriber_id].frequency.value,
                "weekday": chosen[subscriber_id].weekday,
                "updated_at": now,
            }
            for subscriber_id in chunk
        ]
        insert = upsert_insert(connection, subscriber_preferences)
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=["subscriber_id"],
                set_={
                    name: insert.excluded[name]
                    for name in (
                        *RELEASE_TYPE_COLUMNS,
                        "appearances",
                        "frequency",
                        "weekday",
                        "updated_at",
                    )
                },
            ),
            rows,
        )
        current = preferences_of(connection, chunk)
        for subscriber_id in chunk:
            unblocked = (
                current[subscriber_id].blocked_artists - chosen[subscriber_id].blocked_artists
            )
            if unblocked:
                connection.execute(
                    delete(blocked_artists).where(
                        blocked_artists.c.subscriber_id == subscriber_id,
                        blocked_artists.c.artist_mbid.in_(sorted(unblocked)),
                    )
                )
        new_blocks = [
            {"subscriber_id": subscriber_id, "artist_mbid": artist_mbid, "blocked_at": now}
            for subscriber_id in chunk
            for artist_mbid in sorted(
                chosen[subscriber_id].blocked_artists - current[subscriber_id].blocked_artists
            )
        ]
        if new_blocks:
            connection.execute(
                upsert_insert(connection, blocked_artists).on_conflict_do_nothing(
                    index_elements=["subscriber_id", "artist_mbid"]
                ),
                new_blocks,
            )


def subscriber_id_for(connection: Connection, email: str) -> int:
    found = subscribers_by_address(connection, [email])
    if not found:
        raise UnknownSubscriber(f"{email!r}: no subscriber has this address")
    return next(iter(found.values())).id


def show_preferences(engine: Engine, email: str) -> Preferences:
    with engine.connect() as connection:
        subscriber_id = subscriber_id_for(connection, email)
        return preferences_of(connection, [subscriber_id])[subscriber_id]


def change_preferences(
    engine: Engine,
    email: str,
    *,
    release_types: frozenset[ReleaseType] | None = None,
    appearances: bool | None = None,
    frequency: Frequency | None = None,
    weekday: str | None = None,
    block: frozenset[str] = frozenset(),
    unblock: frozenset[str] = frozenset(),
) -> Preferences:
    """Apply the changes given to the subscriber with ``email`` and return the result, in one
    transaction. Raises ``PreferenceError`` (nothing stored) when the result is not valid."""
    with engine.begin() as connection:
        subscriber_id = subscriber_id_for(connection, email)
        changed = preferences_of(connection, [subscriber_id])[subscriber_id].with_changes(
            release_types=release_types,
            appearances=appearances,
            frequency=frequency,
            weekday=weekday,
            block=block,
            unblock=unblock,
        )
        save_preferences(connection, {subscriber_id: changed})
    return changed


def read_preferences(engine: Engine, subscriber_id: int) -> Preferences:
    """``preferences_of`` one subscriber, by id (the preferences page), in a short read."""
    with engine.connect() as connection:
        return preferences_of(connection, [subscriber_id])[subscriber_id]


def change_preferences_by_id(
    engine: Engine, subscriber_id: int, changes: PreferenceChanges, unblock: frozenset[str]
) -> Preferences:
    """``change_preferences`` for a subscriber known by id (the preferences page): the
    changes and unblocks applied to what they have, read and stored in one transaction.
    Raises ``PreferenceError`` (nothing stored) when the result is not valid."""
    with engine.begin() as connection:
        current = preferences_of(connection, [subscriber_id])[subscriber_id]
        changed = changes.applied_to(current).with_changes(unblock=unblock)
        save_preferences(connection, {subscriber_id: changed})
    return changed


def artist_names(engine: Engine, artist_mbids: Iterable[str]) -> dict[str, str]:
    """A name for each of these artists that the warehouse knows one of (from libraries,
    then from release credits); an artist it knows nothing about is left out."""
    mbids = sorted(set(artist_mbids))
    names: dict[str, str] = {}
    with engine.connect() as connection:
        for start in range(0, len(mbids), PARAMETER_CHUNK):
            chunk = mbids[start : start + PARAMETER_CHUNK]
            for table in (release_group_artists, library_artists):
                # Library names last: what the subscriber imported wins over a credit's name.
                names.update(
                    connection.execute(
                        select(table.c.artist_mbid, func.min(table.c.artist_name))
                        .where(table.c.artist_mbid.in_(chunk))
                        .group_by(table.c.artist_mbid)
                    )
                    .tuples()
                    .all()
                )
    return names


def apply_changes(connection: Connection, changes: Mapping[int, PreferenceChanges]) -> int:
    """Apply each subscriber's changes (an import's preference columns) to what they have;
    returns how many subscribers' preferences changed. Run inside a transaction."""
    current = preferences_of(connection, changes)
    changed = {
        subscriber_id: after
        for subscriber_id, change in changes.items()
        if (after := change.applied_to(current[subscriber_id])) != current[subscriber_id]
    }
    if changed:
        save_preferences(connection, changed)
    return len(changed)


def subscribers_selecting(connection: Connection, kind: ReleaseType) -> int:
    """How many subscribers who have not unsubscribed have ``kind`` selected (those without a
    preferences row count when it is one of the defaults). The artist_releases asset asks this
    for broadcast, to know whether to widen the day's MusicBrainz search."""
    selected = func.coalesce(
        subscriber_preferences.c[kind.value],
        true() if kind in DEFAULT_RELEASE_TYPES else false(),
    )
    return connection.execute(
        select(func.count())
        .select_from(
            subscribers.outerjoin(
                subscriber_preferences,
                subscriber_preferences.c.subscriber_id == subscribers.c.id,
            )
        )
        .where(subscribers.c.unsubscribed_at.is_(None), selected)
    ).scalar_one()

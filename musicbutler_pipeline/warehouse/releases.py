"""Release groups: a partition's release groups, and which partition owns a release group of
its lookback window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, delete, insert, select

from musicbutler_pipeline.domain.models import ReleaseGroup
from musicbutler_pipeline.warehouse.dialect import PARAMETER_CHUNK
from musicbutler_pipeline.warehouse.pages import watch_start
from musicbutler_pipeline.warehouse.schema import release_group_artists, release_groups


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
    for start in range(0, len(mbids), PARAMETER_CHUNK):
        chunk = mbids[start : start + PARAMETER_CHUNK]
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


@dataclass(frozen=True, slots=True)
class ClaimReport:
    """What partition ``day`` now owns, and why the other release groups of its window are not
    its own."""

    owned: tuple[ReleaseGroup, ...]
    dated_on_day: int
    added_late: int
    moved_from_later: int
    owned_by_earlier: int
    before_watch_start: int
    watch_start: date


def claim_release_groups(
    connection: Connection,
    day: date,
    groups: Sequence[ReleaseGroup],
    *,
    source: str,
    pages_source: str,
    fetched_at: datetime,
) -> ClaimReport:
    """Make partition ``day`` own the release groups of its lookback window that are its own.

    ``groups`` are the exact-dated release groups that ``day``'s fetch found in its window
    ``[day - lookback, day]``. Each release group belongs to exactly one partition: the earliest
    one that fetched it with an exact date within its window. So ``day`` keeps those dated
    ``day``, and those dated earlier in the window that no earlier partition owns (they were
    entered in MusicBrainz late, or their day's run never saw them). One owned by a later
    partition moves here. Release groups dated before the first partition ever fetched from
    ``pages_source`` (see ``watch_start``) stay out: the first run must not announce a fortnight
    of back catalogue as new. Re-running a day gives the same result. Run inside the caller's
    transaction, after ``replace_source_pages`` for the same day.
    """
    first_watched = watch_start(connection, pages_source, day)
    candidates: dict[str, ReleaseGroup] = {}
    before = 0
    for group in groups:
        if group.release_date is None or group.release_date > day:
            continue
        if group.release_date < first_watched:
            before += 1
            continue
        candidates[group.mbid] = group

    connection.execute(delete(release_groups).where(release_groups.c.partition_date == day))
    earlier: set[str] = set()
    moved = 0
    mbids = list(candidates)
    for start in range(0, len(mbids), PARAMETER_CHUNK):
        chunk = mbids[start : start + PARAMETER_CHUNK]
        earlier.update(
            connection.execute(
                select(release_groups.c.mbid).where(
                    release_groups.c.mbid.in_(chunk), release_groups.c.partition_date < day
                )
            ).scalars()
        )
        moved += connection.execute(
            delete(release_groups).where(
                release_groups.c.mbid.in_(chunk), release_groups.c.partition_date > day
            )
        ).rowcount
    owned = [group for mbid, group in candidates.items() if mbid not in earlier]
    replace_release_groups(connection, day, owned, source=source, fetched_at=fetched_at)
    on_day = sum(1 for group in owned if group.release_date == day)
    return ClaimReport(
        owned=tuple(owned),
        dated_on_day=on_day,
        added_late=len(owned) - on_day,
        moved_from_later=moved,
        owned_by_earlier=len(earlier),
        before_watch_start=before,
        watch_start=first_watched,
    )

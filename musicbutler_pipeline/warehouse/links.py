"""Listen links: which release groups a day must look up, and storing what was found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from sqlalchemy import Connection, Select, and_, delete, insert, not_, select

from musicbutler_pipeline.domain.listen import ordered
from musicbutler_pipeline.domain.models import ListenLink
from musicbutler_pipeline.warehouse.schema import drops, release_group_links

_CHUNK = 500


def listen_links_of(
    connection: Connection, release_group_mbids: Select[tuple[str]]
) -> dict[str, tuple[ListenLink, ...]]:
    """The stored listen links of the release groups ``release_group_mbids`` selects, each
    group's in the order a digest shows them; a release group without links is left out."""
    links: dict[str, list[ListenLink]] = {}
    for row in connection.execute(
        select(
            release_group_links.c.release_group_mbid,
            release_group_links.c.service,
            release_group_links.c.url,
        ).where(release_group_links.c.release_group_mbid.in_(release_group_mbids))
    ):
        links.setdefault(row.release_group_mbid, []).append(ListenLink(row.service, row.url))
    return {mbid: ordered(group) for mbid, group in links.items()}


def owed_release_groups(connection: Connection, day: date) -> list[str]:
    """The release groups someone is owed on ``day`` (they have drops for the partition), in id
    order: the only ones worth a listen-link lookup."""
    return list(
        connection.execute(
            select(drops.c.release_group_mbid)
            .where(drops.c.partition_date == day)
            .group_by(drops.c.release_group_mbid)
            .order_by(drops.c.release_group_mbid)
        ).scalars()
    )


def owed_listen_links(connection: Connection, day: date) -> dict[str, tuple[ListenLink, ...]]:
    """The stored listen links of the release groups owed on ``day`` (see listen_links_of)."""
    return listen_links_of(
        connection, select(drops.c.release_group_mbid).where(drops.c.partition_date == day)
    )


def replace_listen_links(
    connection: Connection,
    day: date,
    links: Mapping[str, Sequence[ListenLink]],
    *,
    fetched_at: datetime,
) -> int:
    """Store the links of the release groups looked up for ``day``; returns the rows written.

    A release group in ``links`` gets exactly those links (none: its old ones go). A release group
    owed but not in ``links`` (its lookup failed) keeps whatever it had, so a rerun on a bad
    MusicBrainz day loses nothing. Rows of ``day`` for release groups no longer owed that day (a
    rerun after the drops changed) go. Idempotent; run inside the caller's transaction."""
    looked_up = sorted(links)
    owed_that_day = select(drops.c.release_group_mbid).where(drops.c.partition_date == day)
    connection.execute(
        delete(release_group_links).where(
            and_(
                release_group_links.c.partition_date == day,
                not_(release_group_links.c.release_group_mbid.in_(owed_that_day)),
            )
        )
    )
    # In chunks: SQLite allows a bounded number of bound parameters per statement.
    for start in range(0, len(looked_up), _CHUNK):
        connection.execute(
            delete(release_group_links).where(
                release_group_links.c.release_group_mbid.in_(looked_up[start : start + _CHUNK])
            )
        )
    rows = [
        {
            "release_group_mbid": mbid,
            "service": link.service,
            "url": link.url,
            "partition_date": day,
            "fetched_at": fetched_at,
        }
        for mbid in looked_up
        for link in {link.service: link for link in links[mbid]}.values()
    ]
    if rows:
        connection.execute(insert(release_group_links), rows)
    return len(rows)

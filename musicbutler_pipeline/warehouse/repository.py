"""Set-based reads and idempotent partition writes over the warehouse tables."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    SourcePage,
    Subscriber,
)
from musicbutler_pipeline.domain.rules import email_key
from musicbutler_pipeline.domain.sends import SendState
from musicbutler_pipeline.warehouse.dialect import upsert_insert
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    library_artists,
    release_group_artists,
    release_groups,
    sends,
    source_pages,
    subscriber_merges,
    subscribers,
)

# SQLite allows 32,766 bound parameters per statement; stay well below it.
_CHUNK = 500


def follows_on(day: date) -> ColumnElement[bool]:
    """A follow counts on ``day`` until the day it was removed. Adding is retroactive (a
    newly imported library is owed a re-run day's drops; the announce-once rule keeps any
    release from being repeated), removal is not."""
    return or_(library_artists.c.unfollowed_on.is_(None), library_artists.c.unfollowed_on > day)


@dataclass(frozen=True, slots=True)
class LibraryStats:
    subscribers: int
    active_subscribers: int
    follows: int
    distinct_artists: int
    added_on_day: int
    removed_on_day: int


def library_stats(connection: Connection, day: date) -> LibraryStats:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    active = subscribers.c.unsubscribed_at.is_(None)
    row = connection.execute(
        select(
            func.count(func.distinct(library_artists.c.subscriber_id)),
            func.count(func.distinct(case((active, library_artists.c.subscriber_id)))),
            func.count(),
            func.count(func.distinct(library_artists.c.artist_mbid)),
        )
        .select_from(library_artists.join(subscribers))
        .where(follows_on(day))
    ).one()
    added = connection.execute(
        select(func.count()).where(
            library_artists.c.followed_at >= start,
            library_artists.c.followed_at < start + timedelta(days=1),
        )
    ).scalar_one()
    removed = connection.execute(
        select(func.count()).where(library_artists.c.unfollowed_on == day)
    ).scalar_one()
    return LibraryStats(row[0], row[1], row[2], row[3], added, removed)


def top_followed_artists(
    connection: Connection, day: date, limit: int = 10
) -> list[tuple[str, int]]:
    rows = connection.execute(
        select(func.min(library_artists.c.artist_name), func.count().label("followers"))
        .where(follows_on(day))
        .group_by(library_artists.c.artist_mbid)
        .order_by(func.count().desc(), func.min(library_artists.c.artist_name))
        .limit(limit)
    ).all()
    return [(name, followers) for name, followers in rows]


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
    for start in range(0, len(mbids), _CHUNK):
        chunk = mbids[start : start + _CHUNK]
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


def replace_drops(connection: Connection, day: date) -> int:
    """Recompute partition ``day``'s drops in one INSERT ... SELECT. Run inside a transaction.

    Each (subscriber, release group) appears once, under the followed artist credited first.
    Release groups announced to the subscriber on any other day are left out; those announced
    for this very day stay, so re-running an already-sent day reproduces the same drops.
    """
    connection.execute(delete(drops).where(drops.c.partition_date == day))
    already_announced = exists().where(
        announcements.c.subscriber_id == library_artists.c.subscriber_id,
        announcements.c.release_group_mbid == release_groups.c.mbid,
        announcements.c.partition_date != day,
    )
    rank = (
        func.row_number()
        .over(
            partition_by=(library_artists.c.subscriber_id, release_groups.c.mbid),
            order_by=(release_group_artists.c.position, library_artists.c.id),
        )
        .label("rank")
    )
    matches = (
        select(
            library_artists.c.subscriber_id,
            release_groups.c.mbid.label("release_group_mbid"),
            library_artists.c.artist_mbid,
            library_artists.c.artist_name,
            rank,
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
        )
        .where(
            release_groups.c.partition_date == day,
            follows_on(day),
            subscribers.c.unsubscribed_at.is_(None),
            ~already_announced,
        )
        .subquery("matches")
    )
    result = connection.execute(
        insert(drops).from_select(
            ["partition_date", "subscriber_id", "release_group_mbid", "artist_mbid", "artist_name"],
            select(
                literal(day, type_=drops.c.partition_date.type),
                matches.c.subscriber_id,
                matches.c.release_group_mbid,
                matches.c.artist_mbid,
                matches.c.artist_name,
            ).where(matches.c.rank == 1),
        )
    )
    return result.rowcount


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


def iter_digests(engine: Engine, day: date, *, batch_size: int = 500) -> Iterator[Digest]:
    """Each subscriber's digest for ``day``, streamed in subscriber-id order.

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
                    .where(drops.c.partition_date == day, drops.c.subscriber_id > last_id)
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
        last_id = batch_ids[-1]
        for _subscriber_id, subscriber_rows in groupby(rows, key=lambda row: row.subscriber_id):
            digest = _digest_from_rows(day, list(subscriber_rows))
            if digest is not None:
                yield digest


def _digest_from_rows(day: date, rows: list[Row[Any]]) -> Digest | None:
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
    )


def owed_subscribers(connection: Connection, day: date) -> int:
    """Subscribers who have drops for ``day`` and are still subscribed."""
    return connection.execute(
        select(func.count(func.distinct(drops.c.subscriber_id)))
        .select_from(drops.join(subscribers, subscribers.c.id == drops.c.subscriber_id))
        .where(drops.c.partition_date == day, subscribers.c.unsubscribed_at.is_(None))
    ).scalar_one()


# --- Subscribers: one per mailbox, found by address case-insensitively ---------------------------


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
    for start in range(0, len(keys), _CHUNK):
        rows = connection.execute(
            select(
                subscribers.c.email_key,
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.unsubscribed_at,
            ).where(subscribers.c.email_key.in_(keys[start : start + _CHUNK]))
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


# --- Raw source pages, and which partition owns a release group (the lookback window) ---------


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A stored page, decompressed: ``body`` is the exact bytes the source sent."""

    partition_date: date
    source: str
    offset: int
    url: str
    query: str
    sha256: str
    record_count: int
    total_count: int
    fetched_at: datetime
    body: bytes


def replace_source_pages(
    connection: Connection, day: date, source: str, pages: Sequence[SourcePage]
) -> int:
    """Replace the raw pages of ``(day, source)``. Run inside the caller's transaction, the one
    that writes the release groups derived from them, so the two never disagree."""
    connection.execute(
        delete(source_pages).where(
            source_pages.c.partition_date == day, source_pages.c.source == source
        )
    )
    if not pages:
        return 0
    connection.execute(
        insert(source_pages),
        [
            {
                "partition_date": day,
                "source": source,
                "page_offset": page.offset,
                "url": page.url,
                "query": page.query,
                "sha256": hashlib.sha256(page.body).hexdigest(),
                "record_count": page.record_count,
                "total_count": page.total_count,
                "byte_count": len(page.body),
                "fetched_at": page.fetched_at,
                # mtime=0: the same body always compresses to the same bytes.
                "body_gzip": gzip.compress(page.body, mtime=0),
            }
            for page in pages
        ],
    )
    return len(pages)


def load_source_pages(connection: Connection, day: date, source: str) -> list[StoredPage]:
    """The stored pages of ``(day, source)`` in offset order, decompressed."""
    rows = connection.execute(
        select(source_pages)
        .where(source_pages.c.partition_date == day, source_pages.c.source == source)
        .order_by(source_pages.c.page_offset)
    ).all()
    return [
        StoredPage(
            partition_date=row.partition_date,
            source=row.source,
            offset=row.page_offset,
            url=row.url,
            query=row.query,
            sha256=row.sha256,
            record_count=row.record_count,
            total_count=row.total_count,
            fetched_at=row.fetched_at,
            body=gzip.decompress(row.body_gzip),
        )
        for row in rows
    ]


def watch_start(connection: Connection, source: str, day: date) -> date:
    """The first partition fetched from ``source`` (``day`` itself on the very first fetch)."""
    first = connection.execute(
        select(func.min(source_pages.c.partition_date)).where(source_pages.c.source == source)
    ).scalar_one()
    return min(first, day) if first is not None else day


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
    for start in range(0, len(mbids), _CHUNK):
        chunk = mbids[start : start + _CHUNK]
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


# --- Libraries imported from ListenBrainz --------------------------------------------------------

LISTENBRAINZ = "listenbrainz"


def listenbrainz_subscribers(connection: Connection) -> list[tuple[int, str]]:
    """(subscriber id, ListenBrainz user) of subscribed subscribers who linked ListenBrainz."""
    rows = connection.execute(
        select(subscribers.c.id, subscribers.c.listenbrainz_user)
        .where(
            subscribers.c.listenbrainz_user.is_not(None),
            subscribers.c.listenbrainz_user != "",
            subscribers.c.unsubscribed_at.is_(None),
        )
        .order_by(subscribers.c.id)
    ).all()
    return [(subscriber_id, user) for subscriber_id, user in rows]


@dataclass(frozen=True, slots=True)
class FollowSync:
    subscribers: int
    added: int
    ended: int
    unchanged: int


def sync_listenbrainz_follows(
    connection: Connection,
    day: date,
    libraries: Mapping[int, Mapping[str, str]],
    *,
    followed_at: datetime,
) -> FollowSync:
    """Make each given subscriber's ListenBrainz-sourced follows equal their library.

    ``libraries`` maps a subscriber id to ``{artist_mbid: artist_name}``; subscribers not in it
    are left alone (their fetch failed or had nothing yet). New artists are followed from now
    (unless already followed from another source, e.g. a CSV import); ListenBrainz follows no
    longer in the library end on ``day``. Follows from other sources are never touched. A few
    statements per batch of subscribers, not one per follow. Run inside a transaction.
    """
    added = ended = unchanged = 0
    ids = list(libraries)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        current = connection.execute(
            select(
                library_artists.c.id,
                library_artists.c.subscriber_id,
                library_artists.c.artist_mbid,
                library_artists.c.source,
            ).where(
                library_artists.c.subscriber_id.in_(chunk),
                library_artists.c.unfollowed_on.is_(None),
            )
        ).all()
        followed = {(row.subscriber_id, row.artist_mbid) for row in current}
        to_end = [
            row.id
            for row in current
            if row.source == LISTENBRAINZ and row.artist_mbid not in libraries[row.subscriber_id]
        ]
        unchanged += sum(
            1
            for row in current
            if row.source == LISTENBRAINZ and row.artist_mbid in libraries[row.subscriber_id]
        )
        to_add = [
            {
                "subscriber_id": subscriber_id,
                "artist_mbid": artist_mbid,
                "artist_name": artist_name,
                "source": LISTENBRAINZ,
                "followed_at": followed_at,
            }
            for subscriber_id in chunk
            for artist_mbid, artist_name in libraries[subscriber_id].items()
            if (subscriber_id, artist_mbid) not in followed
        ]
        for end_start in range(0, len(to_end), _CHUNK):
            ended += connection.execute(
                update(library_artists)
                .where(library_artists.c.id.in_(to_end[end_start : end_start + _CHUNK]))
                .values(unfollowed_on=day)
            ).rowcount
        for add_start in range(0, len(to_add), _CHUNK):
            statement = upsert_insert(connection, library_artists).values(
                to_add[add_start : add_start + _CHUNK]
            )
            # A concurrent CSV import may have added the same follow meanwhile: keep theirs.
            added += connection.execute(
                statement.on_conflict_do_nothing(
                    index_elements=["subscriber_id", "artist_mbid"],
                    index_where=text("unfollowed_on IS NULL"),
                )
            ).rowcount
    return FollowSync(subscribers=len(ids), added=added, ended=ended, unchanged=unchanged)


def end_unlinked_listenbrainz_follows(connection: Connection, day: date) -> int:
    """End, on ``day``, the ListenBrainz follows of subscribers who no longer link a
    ListenBrainz user (their library there is no longer theirs to follow)."""
    unlinked = select(subscribers.c.id).where(
        or_(subscribers.c.listenbrainz_user.is_(None), subscribers.c.listenbrainz_user == "")
    )
    return connection.execute(
        update(library_artists)
        .where(
            library_artists.c.source == LISTENBRAINZ,
            library_artists.c.unfollowed_on.is_(None),
            library_artists.c.subscriber_id.in_(unlinked),
        )
        .values(unfollowed_on=day)
    ).rowcount


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

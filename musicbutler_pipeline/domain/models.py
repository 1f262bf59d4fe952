"""Value types shared by the sources, the warehouse, the digest and the mailer.

Payloads from the outside world are parsed into these frozen dataclasses at the edge, so the rest
of the code never handles raw dicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class CreditedArtist:
    """One artist of a release group's artist credit, in credit order."""

    mbid: str
    name: str
    join_phrase: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseGroup:
    """A MusicBrainz release group as the pipeline stores it.

    ``first_release_date`` is MusicBrainz's raw value and may be partial (``2026`` or ``2026-11``)
    or empty; ``release_date`` is set only when that value is a complete calendar date.
    """

    mbid: str
    title: str
    primary_type: str | None
    secondary_types: tuple[str, ...]
    first_release_date: str
    release_date: date | None
    artists: tuple[CreditedArtist, ...]

    @property
    def credit(self) -> str:
        """The artist credit as MusicBrainz prints it, e.g. ``Artist A feat. Artist B``."""
        return "".join(artist.name + artist.join_phrase for artist in self.artists)

    @property
    def type_label(self) -> str:
        """``Album``, ``Single``, ``Album + Live`` ... for the digest."""
        parts = [self.primary_type or "Other", *self.secondary_types]
        return " + ".join(parts)


@dataclass(frozen=True, slots=True)
class ListenLink:
    """Where a release group can be heard: a service's name ("Spotify") and the URL MusicBrainz
    has for it (see ``domain.listen``)."""

    service: str
    url: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class DigestArtist:
    """A followed artist and the new release groups credited to them, for one digest."""

    mbid: str
    name: str
    release_groups: tuple[ReleaseGroup, ...]


DEFAULT_SENDER_NAME = "MusicButler"


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a digest comes from, as its footer names them: the display name of
    ``MUSICBUTLER_MAIL_FROM`` and ``MUSICBUTLER_POSTAL_ADDRESS`` (bulk-mail rules ask for one)."""

    name: str = DEFAULT_SENDER_NAME
    postal_address: str | None = None


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything one subscriber's email for one partition says."""

    subscriber: Subscriber
    partition_date: date
    artists: tuple[DigestArtist, ...]
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""
    # The signed "Manage preferences" link (`musicbutler web`); none: no link.
    preferences_url: str = ""
    # The subscriber's feeds of what was announced to them (`musicbutler web`); none: no links.
    feed_atom_url: str = ""
    feed_icalendar_url: str = ""
    sender: Sender = Sender()
    # Days before ``partition_date`` whose own run never fetched releases (it did not run, or its
    # pages are gone): a release dated one of them may have been in MusicBrainz in time, so the
    # digest does not claim it was added late, only that it was not announced before.
    unchecked_days: frozenset[date] = frozenset()
    # Per release group id, its listen links (``domain.listen.ordered``); a release group without
    # any keeps only its MusicBrainz link.
    listen_links: Mapping[str, tuple[ListenLink, ...]] = field(default_factory=dict)
    # A weekly digest: the first day it covers (``partition_date`` - 6). None: a daily digest.
    week_of: date | None = None

    @property
    def first_day(self) -> date:
        """The first day whose releases count as new in this digest (the others came out
        earlier and were announced late)."""
        return self.week_of or self.partition_date

    @property
    def release_group_mbids(self) -> tuple[str, ...]:
        return tuple(rg.mbid for artist in self.artists for rg in artist.release_groups)


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What a release source returned for one partition, with the evidence for the metadata."""

    release_groups: tuple[ReleaseGroup, ...]
    records_seen: int = 0
    records_skipped: int = 0
    not_exact_date: int = 0
    requests: int = 0
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SourcePage:
    """One page of a source's response exactly as received: the source produces it, the
    warehouse stores it (compressed) and gives it back unchanged, so a day can be audited and
    re-derived from the very bytes the source sent."""

    url: str
    query: str
    offset: int
    body: bytes
    record_count: int
    total_count: int
    fetched_at: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

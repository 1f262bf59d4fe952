"""A subscriber's feeds of what was announced to them: Atom (RFC 4287) and iCalendar (RFC 5545).

Both render the same ``SubscriberFeed``: the release groups announced to one subscriber in the
last ``FEED_DAYS`` days. Identifiers are stable, so readers and calendars never show an entry
twice: an Atom entry's id is the release group's MusicBrainz URL, an event's UID is made of the
release group's MBID, and neither depends on the feed's secret (rotating it keeps them). An
event's DTSTAMP and an entry's ``updated`` are when the release was announced, so a feed that
announced nothing new renders byte for byte the same (its ETag does not change).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime

import icalendar

from musicbutler_pipeline.domain.models import ListenLink
from musicbutler_pipeline.domain.rules import one_line, without_lone_surrogates

FEED_DAYS = 90
FEED_PATH = "/feeds/"
MUSICBRAINZ_WEB = "https://musicbrainz.org"
_ATOM = "http://www.w3.org/2005/Atom"
# Shown when nothing was announced yet: a fixed instant, so an empty feed's ETag is stable too.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FeedRelease:
    """One release group as announced to the subscriber."""

    mbid: str
    title: str
    artist_credit: str
    type_label: str
    release_date: date | None
    first_release_date: str
    # The digest day that announced it, and when.
    partition_date: date
    announced_at: datetime
    # Where it can be heard (the digest's listen buttons), in the digest's order.
    listen_links: tuple[ListenLink, ...] = ()

    @property
    def url(self) -> str:
        return f"{MUSICBRAINZ_WEB}/release-group/{self.mbid}"

    @property
    def calendar_day(self) -> date:
        """The release date; for a release MusicBrainz dates only by year or month, the day it
        was announced."""
        return self.release_date or self.partition_date


@dataclass(frozen=True, slots=True)
class SubscriberFeed:
    subscriber_id: int
    secret: str
    releases: tuple[FeedRelease, ...]

    @property
    def updated(self) -> datetime | None:
        """When the newest release in it was announced; None when it is empty."""
        return max((release.announced_at for release in self.releases), default=None)


@dataclass(frozen=True, slots=True)
class FeedLinks:
    atom: str
    icalendar: str


def feed_links(base_url: str, secret: str) -> FeedLinks:
    """The subscriber's two feed URLs under ``MUSICBUTLER_BASE_URL``."""
    prefix = f"{base_url.rstrip('/')}{FEED_PATH}{secret}"
    return FeedLinks(atom=f"{prefix}.atom", icalendar=f"{prefix}.ics")


def _text(value: str) -> str:
    """Names and titles come from MusicBrainz: one line, and only characters XML can carry."""
    line = one_line(without_lone_surrogates(value)).strip()
    return "".join(char for char in line if char == "\t" or _xml_char(ord(char)))


def _xml_char(code: int) -> bool:
    return code >= 0x20 and code not in (0xFFFE, 0xFFFF)


def _headline(release: FeedRelease) -> str:
    """``Artist: Title``."""
    return f"{_text(release.artist_credit)}: {_text(release.title)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _summary(release: FeedRelease) -> str:
    day = release.release_date.isoformat() if release.release_date else release.first_release_date
    parts = [release.type_label, f"released {day}" if day else ""]
    summary = ", ".join(part for part in parts if part)
    if release.listen_links:
        listen = ", ".join(f"{link.service} {link.url}" for link in release.listen_links)
        summary = f"{summary}. Listen: {listen}"
    return summary


def render_atom(feed: SubscriberFeed, *, base_url: str) -> bytes:
    """The Atom feed, newest announcement first."""
    links = feed_links(base_url, feed.secret)
    root = ET.Element("feed", xmlns=_ATOM)
    ET.SubElement(root, "id").text = f"urn:musicbutler:feed:{feed.subscriber_id}"
    ET.SubElement(root, "title").text = "MusicButler: new music from the artists you follow"
    ET.SubElement(root, "updated").text = _iso(feed.updated or _EPOCH)
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=links.atom)
    ET.SubElement(ET.SubElement(root, "author"), "name").text = "MusicButler"
    ET.SubElement(root, "generator").text = "MusicButler"
    for release in sorted(feed.releases, key=lambda r: (r.announced_at, r.mbid), reverse=True):
        entry = ET.SubElement(root, "entry")
        ET.SubElement(entry, "id").text = release.url
        ET.SubElement(entry, "title").text = _headline(release)
        ET.SubElement(entry, "updated").text = _iso(release.announced_at)
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=release.url)
        for link in release.listen_links:
            ET.SubElement(entry, "link", rel="related", href=link.url, title=_text(link.service))
        ET.SubElement(entry, "summary").text = _text(_summary(release))
        ET.SubElement(entry, "category", term=release.type_label or "release")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def render_icalendar(feed: SubscriberFeed, *, base_url: str) -> bytes:
    """The calendar: one all-day event per release on its release date."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//MusicButler//Release feed//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", "MusicButler releases")
    calendar.add("source", feed_links(base_url, feed.secret).icalendar)
    for release in sorted(feed.releases, key=lambda r: (r.calendar_day, r.mbid)):
        event = icalendar.Event()
        event.add("uid", f"release-group-{release.mbid}@musicbutler")
        event.add("dtstamp", release.announced_at.astimezone(UTC))
        # A DATE value without DTEND is an all-day event of that one day (RFC 5545 3.6.1).
        event.add("dtstart", release.calendar_day)
        event.add("summary", _headline(release))
        event.add("description", _text(_summary(release)))
        event.add("url", release.url)
        event.add("transp", "TRANSPARENT")
        calendar.add_component(event)
    return calendar.to_ical()

"""Rendering one subscriber's digest: subject, plain text and HTML (Jinja2, autoescaped).

The templates get a small view model (``ArtistView`` / ``ReleaseView``) with every link and label
already made, so they hold layout only. The HTML template keeps its CSS in one ``<style>`` block
and ``css-inline`` moves it into ``style`` attributes after rendering, because many mail clients
(Gmail among them, in some views) drop ``<style>`` elements.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from musicbutler_pipeline.domain.listen import service_for_url
from musicbutler_pipeline.domain.models import (
    Digest,
    DigestArtist,
    ListenLink,
    ReleaseGroup,
    Sender,
)
from musicbutler_pipeline.domain.rules import (
    digest_subject,
    one_line,
    shorten,
    weekly_digest_subject,
    without_lone_surrogates,
)

MUSICBRAINZ_WEB = "https://musicbrainz.org"
COVER_ART_ARCHIVE = "https://coverartarchive.org"

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Shown behind each cover while it loads, when images are blocked, or when the Cover Art Archive
# has no art: a colour picked from the release id, so the list still looks deliberate.
_TILE_COLOURS = (
    "#5b3cc4", "#0f766e", "#b45309", "#be185d", "#1d4ed8", "#4d7c0f", "#9333ea", "#c2410c",
)  # fmt: skip


# Names and titles are data, not layout: each is shown on one line (control characters and line
# separators become a space) and at most this many characters, the last an ellipsis when cut. A
# 100,000-character name would otherwise fill the To header, the greeting and the preheader.
# The warehouse keeps the full text; these bound only what a digest shows.
SHOWN_SUBSCRIBER_NAME = 80
SHOWN_ARTIST_NAME = 100
SHOWN_TITLE = 200
SHOWN_JOIN_PHRASE = 30
SHOWN_LABEL = 100  # release type ("Album + Live") and date
SHOWN_SENDER_NAME = 100
SHOWN_POSTAL_ADDRESS = 200


def shown(text: str | None, limit: int, *, strip: bool = True) -> str:
    """``text`` as a digest shows it: one line of at most ``limit`` characters, encodable.

    ``strip=False`` keeps the spaces at either end (a join phrase such as ``" feat. "``)."""
    line = one_line(without_lone_surrogates(text or ""))
    return shorten(line.strip() if strip else line, limit)


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class CreditView:
    """One credited artist: name, MusicBrainz link and the join phrase that follows it."""

    name: str
    url: str
    join_phrase: str


@dataclass(frozen=True, slots=True)
class ReleaseView:
    title: str
    url: str
    cover_url: str
    type_label: str
    credit: str
    credits: tuple[CreditView, ...]
    date_label: str
    tile_colour: str
    # Where it can be heard, in the order the buttons show; empty: the MusicBrainz link only.
    listen: tuple[ListenLink, ...] = ()


@dataclass(frozen=True, slots=True)
class ArtistView:
    name: str
    url: str
    releases: tuple[ReleaseView, ...]


@dataclass(frozen=True, slots=True)
class SectionView:
    """The releases that came out on the digest's day, or those that came out earlier and were
    only added to MusicBrainz since (the lookback announces them late)."""

    heading: str | None  # None when the digest has only this section: the intro says which
    artists: tuple[ArtistView, ...]


def long_date(day: date) -> str:
    """``Monday, November 23, 2026``, independent of the process locale."""
    return f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}, {day.year}"


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: CJK characters are two columns wide, so a
    plain-text underline under ``山田 花子`` needs nine dashes, not five."""
    return sum(
        0
        if unicodedata.combining(char)
        else 2
        if unicodedata.east_asian_width(char) in ("W", "F")
        else 1
        for char in text
    )


def _release_view(release: ReleaseGroup, links: tuple[ListenLink, ...] = ()) -> ReleaseView:
    colour = _TILE_COLOURS[int(hashlib.sha256(release.mbid.encode()).hexdigest(), 16) % 8]
    day = release.release_date
    credits = tuple(
        CreditView(
            shown(artist.name, SHOWN_ARTIST_NAME),
            f"{MUSICBRAINZ_WEB}/artist/{artist.mbid}",
            shown(artist.join_phrase, SHOWN_JOIN_PHRASE, strip=False),
        )
        for artist in release.artists
    )
    return ReleaseView(
        title=shown(release.title, SHOWN_TITLE),
        url=f"{MUSICBRAINZ_WEB}/release-group/{release.mbid}",
        cover_url=f"{COVER_ART_ARCHIVE}/release-group/{release.mbid}/front-250",
        type_label=shown(release.type_label, SHOWN_LABEL),
        credit="".join(credit.name + credit.join_phrase for credit in credits),
        credits=credits,
        date_label=(
            f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"
            if day
            else shown(release.first_release_date, SHOWN_LABEL)
        ),
        tile_colour=colour,
        # Checked again here: only http(s) links of a known service ever reach an href.
        listen=tuple(link for link in links if service_for_url(link.url) == link.service),
    )


def _artist_view(
    artist: DigestArtist,
    releases: tuple[ReleaseGroup, ...],
    links: Mapping[str, tuple[ListenLink, ...]],
) -> ArtistView:
    return ArtistView(
        name=shown(artist.name, SHOWN_ARTIST_NAME),
        url=f"{MUSICBRAINZ_WEB}/artist/{artist.mbid}",
        releases=tuple(_release_view(release, links.get(release.mbid, ())) for release in releases),
    )


# A range of dates takes an en dash (U+2013), not a hyphen, as typesetting does.
EN_DASH = "\N{EN DASH}"


def _month_day(day: date, *, with_year: bool) -> str:
    label = f"{_MONTHS[day.month - 1]} {day.day}"
    return f"{label}, {day.year}" if with_year else label


def _date_range(days: list[date], *, year: int) -> tuple[str, str] | None:
    """The span of ``days`` twice: for a heading (``November 14`` en dash ``19``) and for a sentence
    (``between November 14 and 19``); years are shown only when not ``year``. None: no dates."""
    if not days:
        return None
    first, last = min(days), max(days)
    with_year = first.year != year or last.year != year
    start = _month_day(first, with_year=with_year)
    if first == last:
        return start, f"on {start}"
    if first.year == last.year and first.month == last.month and not with_year:
        return f"{start}{EN_DASH}{last.day}", f"between {start} and {last.day}"
    end = _month_day(last, with_year=with_year)
    return f"{start} {EN_DASH} {end}", f"between {start} and {end}"


def _followed(count: int) -> str:
    return "the artist you follow" if count == 1 else f"{count} artists you follow"


def _distinct(releases: list[ReleaseGroup]) -> list[ReleaseGroup]:
    """Each release once: one by two followed artists is listed under both but is one release."""
    return list({release.mbid: release for release in releases}.values())


def _sections(digest: Digest) -> tuple[list[SectionView], str, str]:
    """The digest's sections, the intro sentence after the greeting and the preheader."""
    day = digest.partition_date
    first = digest.first_day
    links = digest.listen_links
    out_today: list[tuple[DigestArtist, tuple[ReleaseGroup, ...]]] = []
    added_late: list[tuple[DigestArtist, tuple[ReleaseGroup, ...]]] = []
    for artist in digest.artists:
        today = tuple(rg for rg in artist.release_groups if _in_window(rg, first, day))
        late = tuple(rg for rg in artist.release_groups if not _in_window(rg, first, day))
        if today:
            out_today.append((artist, today))
        if late:
            added_late.append((artist, late))
    today_releases = _distinct([rg for _artist, groups in out_today for rg in groups])
    late_releases = _distinct([rg for _artist, groups in added_late for rg in groups])
    late_span = _date_range(
        [rg.release_date for rg in late_releases if rg.release_date], year=day.year
    )
    both = bool(out_today and added_late)
    sections: list[SectionView] = []
    sentences: list[str] = []
    if out_today:
        sections.append(
            SectionView(
                # Not "today": a retry may send it a day or two later.
                _out_heading(first, day) if both else None,
                tuple(_artist_view(artist, groups, links) for artist, groups in out_today),
            )
        )
        sentences.append(
            f"{_plural(len(today_releases), 'new release')} from {_followed(len(out_today))} "
            f"came out {_out_span(first, day)}."
        )
    if added_late:
        # Late in MusicBrainz is known only when the release's own day was fetched without it.
        known_late = not any(rg.release_date in digest.unchecked_days for rg in late_releases)
        heading = "Added to MusicBrainz late" if known_late else "Released earlier"
        if late_span:
            heading += f" (released {late_span[0]})" if known_late else f" ({late_span[0]})"
        sections.append(
            SectionView(
                heading if both else None,
                tuple(_artist_view(artist, groups, links) for artist, groups in added_late),
            )
        )
        one = len(late_releases) == 1
        what = _plural(len(late_releases), "earlier release" if both else "release")
        why = "added to MusicBrainz late" if known_late else "not announced before"
        sentences.append(
            f"{'Also, ' if both else ''}{what} from {_followed(len(added_late))} "
            f"{'was' if one else 'were'} {why}: "
            f"{'it' if one else 'they'} came out {late_span[1] if late_span else 'earlier'}."
        )
    names = _join_names([shown(artist.name, SHOWN_ARTIST_NAME) for artist in digest.artists])
    if both:
        preheader = (
            f"{_plural(len(today_releases), 'new release')} and "
            f"{len(late_releases)} earlier, from {names}"
        )
    elif out_today:
        preheader = f"{_plural(len(today_releases), 'new release')} from {names}"
    else:
        preheader = f"{_plural(len(late_releases), 'earlier release')} from {names}"
    return sections, " ".join(sentences), preheader


def _in_window(release: ReleaseGroup, first: date, day: date) -> bool:
    return release.release_date is not None and first <= release.release_date <= day


def _out_heading(first: date, day: date) -> str:
    if first == day:
        return f"Out on {_month_day(day, with_year=False)}"
    span = _date_range([first, day], year=day.year)
    return f"Out {span[0]}" if span else f"Out by {_month_day(day, with_year=False)}"


def _out_span(first: date, day: date) -> str:
    """``on Monday, November 23, 2026`` for a day, ``between ... and ...`` for a week."""
    if first == day:
        return f"on {long_date(day)}"
    return f"between {long_date(first)} and {long_date(day)}"


def _sender_view(sender: Sender) -> tuple[str, str | None]:
    return (
        shown(sender.name, SHOWN_SENDER_NAME) or "MusicButler",
        shown(sender.postal_address, SHOWN_POSTAL_ADDRESS) or None,
    )


def _join_names(names: list[str], shown: int = 3) -> str:
    """``A``, ``A and B``, ``A, B and C``, ``A, B, C and 2 more``."""
    if len(names) > shown:
        return f"{', '.join(names[:shown])} and {len(names) - shown} more"
    if len(names) > 1:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return "".join(names)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("musicbutler_pipeline.domain", "templates"),
        # Titles and names come from MusicBrainz and subscribers: never trusted as markup.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["underline"] = lambda text, char="-": char * display_width(text)
    environment.filters["plural"] = _plural
    return environment


@cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules cannot be inlined; keep them in a <style> block for the clients that read it.
    # Nothing is fetched: the template links no stylesheet, and a render must never do I/O.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def render_digest(digest: Digest) -> RenderedDigest:
    """The email for ``digest``. Releases dated the digest's day are "out today"; the others
    came out earlier within the lookback and only now reached MusicBrainz, and the digest says
    so rather than claim they all came out that day."""
    subject = (
        weekly_digest_subject(digest.week_of)
        if digest.week_of is not None
        else digest_subject(digest.partition_date)
    )
    sections, intro, preheader = _sections(digest)
    sender_name, postal_address = _sender_view(digest.sender)
    context = {
        "subject": subject,
        # None when nothing printable is left: the templates then greet "Hi there".
        "name": shown(digest.subscriber.name, SHOWN_SUBSCRIBER_NAME) or None,
        "intro": intro,
        "sections": sections,
        # "this artist" or "these artists": the footer says why this email came.
        "followed": "this artist" if len(digest.artists) == 1 else "these artists",
        # The preview line inboxes show after the subject.
        "preheader": preheader,
        "cadence": (
            "We write once a week, on weeks they release something."
            if digest.week_of is not None
            else "We write only on days they release something."
        ),
        "unsubscribe_url": digest.unsubscribe_url,
        "preferences_url": digest.preferences_url,
        "feed_atom_url": digest.feed_atom_url,
        "feed_icalendar_url": digest.feed_icalendar_url,
        "sender_name": sender_name,
        "postal_address": postal_address,
    }
    environment = _environment()
    html = environment.get_template("digest.html").render(context)
    return RenderedDigest(
        subject=subject,
        text=environment.get_template("digest.txt").render(context),
        html=_inliner().inline(html),
    )

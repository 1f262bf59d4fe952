"""Rendering one subscriber's digest: subject, plain text and HTML (Jinja2, autoescaped).

The templates get a small view model (``ArtistView`` / ``ReleaseView``) with every link and label
already made, so they hold layout only. The HTML template keeps its CSS in one ``<style>`` block
and ``css-inline`` moves it into ``style`` attributes after rendering, because many mail clients
(Gmail among them, in some views) drop ``<style>`` elements.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from musicbutler_pipeline.domain.models import Digest, DigestArtist, ReleaseGroup
from musicbutler_pipeline.domain.rules import (
    digest_subject,
    one_line,
    shorten,
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


@dataclass(frozen=True, slots=True)
class ArtistView:
    name: str
    url: str
    releases: tuple[ReleaseView, ...]


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


def _release_view(release: ReleaseGroup) -> ReleaseView:
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
    )


def _artist_view(artist: DigestArtist) -> ArtistView:
    return ArtistView(
        name=shown(artist.name, SHOWN_ARTIST_NAME),
        url=f"{MUSICBRAINZ_WEB}/artist/{artist.mbid}",
        releases=tuple(_release_view(release) for release in artist.release_groups),
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
    subject = digest_subject(digest.partition_date)
    artists = tuple(_artist_view(artist) for artist in digest.artists)
    release_count = len(set(digest.release_group_mbids))
    names = [artist.name for artist in artists]
    context = {
        "subject": subject,
        # None when nothing printable is left: the templates then greet "Hi there".
        "name": shown(digest.subscriber.name, SHOWN_SUBSCRIBER_NAME) or None,
        "day_label": long_date(digest.partition_date),
        "artists": artists,
        "release_count": release_count,
        "artist_count": len(artists),
        # The preview line inboxes show after the subject.
        "preheader": f"{_plural(release_count, 'new release')} from {_join_names(names)}",
        "unsubscribe_url": digest.unsubscribe_url,
    }
    environment = _environment()
    html = environment.get_template("digest.html").render(context)
    return RenderedDigest(
        subject=subject,
        text=environment.get_template("digest.txt").render(context),
        html=_inliner().inline(html),
    )

"""Listen links: which streaming or store service a MusicBrainz URL relationship points to, and
the one link per service a digest shows for a release group.

MusicBrainz keeps these links on releases (the editions of a release group), as URL
relationships typed "free streaming", "streaming", "purchase for download" and so on. The type
says little about the service (Bandcamp is both "purchase for download" and "free streaming"),
so the service is read from the URL's host, which is what a subscriber recognises. URLs of hosts
we do not know (Discogs, Wikidata, a label's shop) are not listen links and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from musicbutler_pipeline.domain.models import ListenLink

# Longer than any streaming URL MusicBrainz holds; a longer one is not a link we would show.
MAX_URL = 2000

# (service, hosts): a URL's host matches a host exactly or is a subdomain of it
# ("artist.bandcamp.com"). Checked in this order, so "music.youtube.com" is YouTube Music before
# "youtube.com" is YouTube; the digest shows the buttons in this order too.
SERVICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Spotify", ("open.spotify.com", "play.spotify.com", "spotify.com")),
    ("Apple Music", ("music.apple.com", "itunes.apple.com", "geo.music.apple.com")),
    ("Bandcamp", ("bandcamp.com",)),
    ("Deezer", ("deezer.com", "deezer.page.link")),
    ("Tidal", ("tidal.com",)),
    ("YouTube Music", ("music.youtube.com",)),
    ("YouTube", ("youtube.com", "youtu.be")),
    ("SoundCloud", ("soundcloud.com",)),
    ("Amazon Music", ("music.amazon.com", "music.amazon.co.uk", "music.amazon.de")),
    ("Qobuz", ("qobuz.com",)),
    ("Beatport", ("beatport.com",)),
)
SERVICE_ORDER = {service: position for position, (service, _hosts) in enumerate(SERVICES)}


def service_for_url(url: str) -> str | None:
    """The service ``url`` belongs to ("Spotify", "Bandcamp" ...), or None when it is not an
    http(s) URL of a service we know, or is not one we would put in an email (too long, spaces
    or control characters in it, user info before the host)."""
    if not url or len(url) > MAX_URL or any(char.isspace() or ord(char) < 32 for char in url):
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:  # an invalid IPv6 literal, say
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if host.startswith("www."):
        host = host[4:]
    for service, hosts in SERVICES:
        if any(host == known or host.endswith("." + known) for known in hosts):
            return service
    return None


@dataclass(frozen=True, slots=True)
class ReleaseLinks:
    """The URL relationships of one release, with what decides which edition's link is shown."""

    release_mbid: str
    status: str | None
    date: str
    urls: tuple[str, ...]


def pick_links(releases: Iterable[ReleaseLinks]) -> tuple[ListenLink, ...]:
    """One link per service for a release group, in ``SERVICES`` order.

    A release group has several releases (standard, deluxe, a single's remix EP ...), often each
    with its own Spotify album. The link shown is the one of the official release that came out
    first (the edition the announcement is about), then the lowest release id, then the smallest
    URL, so the choice never depends on the order MusicBrainz happened to return.
    """
    ranked = sorted(
        releases,
        key=lambda release: (
            (release.status or "").lower() != "official",
            release.date or "9999",
            release.release_mbid,
        ),
    )
    chosen: dict[str, ListenLink] = {}
    for release in ranked:
        for url in sorted(release.urls):
            service = service_for_url(url)
            if service is not None and service not in chosen:
                chosen[service] = ListenLink(service, url)
    return ordered(chosen.values())


def ordered(links: Iterable[ListenLink]) -> tuple[ListenLink, ...]:
    """``links`` in the order the digest shows them (``SERVICES``, unknown names last)."""
    return tuple(
        sorted(links, key=lambda link: (SERVICE_ORDER.get(link.service, len(SERVICES)), link.url))
    )

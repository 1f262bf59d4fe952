"""Listen links, pure: URL -> service, one link per service, and how a digest shows them."""

from __future__ import annotations

from datetime import date

import pytest

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.listen import ReleaseLinks, ordered, pick_links, service_for_url
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ListenLink,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.domain.rules import InvalidInput
from musicbutler_pipeline.sources.musicbrainz_links import parse_release_links


@pytest.mark.parametrize(
    ("url", "service"),
    [
        ("https://open.spotify.com/album/2fojyOcn96FkDOqKJl25OJ", "Spotify"),
        ("https://music.apple.com/gb/album/x/1440857781", "Apple Music"),
        ("https://itunes.apple.com/us/album/id1440857781", "Apple Music"),
        ("https://artist.bandcamp.com/album/a-title", "Bandcamp"),
        ("https://bandcamp.com/EmbeddedPlayer/album=1", "Bandcamp"),
        ("https://www.deezer.com/album/302127", "Deezer"),
        ("https://tidal.com/browse/album/77640617", "Tidal"),
        ("https://listen.tidal.com/album/77640617", "Tidal"),
        ("https://music.youtube.com/playlist?list=OLAK5uy_x", "YouTube Music"),
        ("https://www.youtube.com/playlist?list=PL1", "YouTube"),
        ("https://soundcloud.com/someone/sets/a", "SoundCloud"),
        ("HTTPS://OPEN.SPOTIFY.COM/album/x", "Spotify"),
        ("http://open.spotify.com./album/x", "Spotify"),
        ("https://music.amazon.com/albums/B0", "Amazon Music"),
        ("https://www.qobuz.com/album/x", "Qobuz"),
    ],
)
def test_known_services_are_recognised_by_host(url: str, service: str) -> None:
    assert service_for_url(url) == service


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://www.discogs.com/release/1",  # a URL relationship, but nowhere to listen
        "https://www.wikidata.org/wiki/Q1",
        "https://notspotify.com/album/x",  # a suffix is not a subdomain
        "https://spotify.com.evil.example/album/x",
        "javascript:alert(1)//open.spotify.com",
        "ftp://open.spotify.com/album/x",
        "https://user@open.spotify.com/album/x",
        "https://open.spotify.com/album/x y",
        "https://open.spotify.com/album/x\n",
        "https://[::1/album",  # not a URL urlsplit accepts
        "https://open.spotify.com/" + "x" * 3000,
    ],
)
def test_anything_else_is_not_a_listen_link(url: str) -> None:
    assert service_for_url(url) is None


def test_one_link_per_service_from_the_first_official_edition() -> None:
    links = pick_links(
        [
            ReleaseLinks(
                "bbbbbbbb-0000-4000-8000-000000000000",
                "Official",
                "2026-11-30",
                ("https://open.spotify.com/album/deluxe", "https://tidal.com/album/deluxe"),
            ),
            ReleaseLinks(
                "cccccccc-0000-4000-8000-000000000000",
                "Promotion",
                "2026-11-01",
                ("https://open.spotify.com/album/promo",),
            ),
            ReleaseLinks(
                "aaaaaaaa-0000-4000-8000-000000000000",
                "Official",
                "2026-11-23",
                (
                    "https://x.bandcamp.com/album/standard",
                    "https://open.spotify.com/album/standard",
                    "https://www.discogs.com/release/1",
                ),
            ),
        ]
    )
    assert links == (
        ListenLink("Spotify", "https://open.spotify.com/album/standard"),
        ListenLink("Bandcamp", "https://x.bandcamp.com/album/standard"),
        ListenLink("Tidal", "https://tidal.com/album/deluxe"),
    )
    assert pick_links([]) == ()


def test_links_are_shown_in_a_fixed_service_order() -> None:
    shuffled = [
        ListenLink("SoundCloud", "https://soundcloud.com/a"),
        ListenLink("Spotify", "https://open.spotify.com/album/a"),
        ListenLink("Bandcamp", "https://a.bandcamp.com/album/a"),
    ]
    assert [link.service for link in ordered(shuffled)] == ["Spotify", "Bandcamp", "SoundCloud"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("text", "release is a str, not an object"),
        ({"title": "no id"}, "release has no valid id"),
        ({"id": "123"}, "release has no valid id"),
        (
            {"id": "aaaaaaaa-0000-4000-8000-000000000000", "relations": {"a": 1}},
            "relations is a dict, not a list",
        ),
    ],
)
def test_malformed_release_records_say_what_is_wrong(record: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_release_links(record)


RELEASE = ReleaseGroup(
    mbid="11111111-1111-4111-8111-111111111111",
    title="Lantern Dub",
    primary_type="Single",
    secondary_types=(),
    first_release_date="2026-11-23",
    release_date=date(2026, 11, 23),
    artists=(CreditedArtist("22222222-2222-4222-8222-222222222222", "Four Tet"),),
)
PLAIN = ReleaseGroup(
    mbid="33333333-3333-4333-8333-333333333333",
    title="Quiet One",
    primary_type="Album",
    secondary_types=(),
    first_release_date="2026-11-23",
    release_date=date(2026, 11, 23),
    artists=RELEASE.artists,
)
SPOTIFY = ListenLink("Spotify", "https://open.spotify.com/album/abc")
BANDCAMP = ListenLink("Bandcamp", "https://fourtet.bandcamp.com/album/lantern-dub?a=1&b=2")


def digest(links: dict[str, tuple[ListenLink, ...]]) -> Digest:
    return Digest(
        subscriber=Subscriber(1, "zoe@example.org", "Zoë"),
        partition_date=date(2026, 11, 23),
        artists=(DigestArtist(RELEASE.artists[0].mbid, "Four Tet", (RELEASE, PLAIN)),),
        unsubscribe_url="https://butler.example/u/t",
        listen_links=links,
    )


def test_text_part_lists_listen_links_after_the_musicbrainz_link() -> None:
    text = render_digest(digest({RELEASE.mbid: (SPOTIFY, BANDCAMP)})).text
    block = text.split("  Lantern Dub\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        "  Single by Four Tet",
        "  Released November 23, 2026",
        f"  https://musicbrainz.org/release-group/{RELEASE.mbid}",
        f"  Listen: Spotify {SPOTIFY.url}, Bandcamp {BANDCAMP.url}",
    ]
    # The release without links keeps only its MusicBrainz link.
    plain = text.split("  Quiet One\n", 1)[1].split("\n\n", 1)[0]
    assert f"https://musicbrainz.org/release-group/{PLAIN.mbid}" in plain
    assert "Listen:" not in plain
    assert text.count("Listen:") == 1


def test_html_part_shows_buttons_that_read_as_text_without_styles() -> None:
    html = render_digest(digest({RELEASE.mbid: (SPOTIFY, BANDCAMP)})).html
    assert html.count('class="listen-button"') == 2
    assert f'href="{SPOTIFY.url}"' in html
    assert 'href="https://fourtet.bandcamp.com/album/lantern-dub?a=1&amp;b=2"' in html
    # Styles inlined (mail clients drop <style>), and the label degrades to "Listen: Spotify".
    button = html.split('class="listen-button"', 1)[1].split(">", 1)[0]
    assert "border-radius: 999px" in button
    assert "Listen: <a" in html
    assert f"https://musicbrainz.org/release-group/{RELEASE.mbid}" in html
    assert f"https://musicbrainz.org/release-group/{PLAIN.mbid}" in html


def test_no_links_no_listen_line() -> None:
    rendered = render_digest(digest({}))
    assert "Listen:" not in rendered.text
    assert "listen-button" not in rendered.html


def test_a_link_that_is_not_its_service_never_reaches_an_href() -> None:
    forged = ListenLink("Spotify", "javascript:alert(1)")
    rendered = render_digest(digest({RELEASE.mbid: (forged, BANDCAMP)}))
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    assert rendered.html.count('class="listen-button"') == 1

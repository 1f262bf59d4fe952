"""Digest rendering: escaping, non-ASCII, grouping, links, and a plain-text part that reads well."""

from __future__ import annotations

from datetime import date
from html.parser import HTMLParser

from musicbutler_pipeline.domain.digest import display_width, long_date, render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Subscriber,
)
from tests.builders import mbid

DAY = date(2026, 11, 23)
UNSUBSCRIBE = "https://mb.example/unsubscribe/7.abcdefghijklmnopqrstuv"
NASTY = "Love & <Hate> \"Quotes\" 'Apostrophes' </a><script>alert(1)</script>"


def _release(title: str, *credits: tuple[str, str], types: tuple[str, ...] = ()) -> ReleaseGroup:
    return ReleaseGroup(
        mbid=mbid(f"rg:{title}"),
        title=title,
        primary_type="Album",
        secondary_types=types,
        first_release_date=DAY.isoformat(),
        release_date=DAY,
        artists=tuple(CreditedArtist(mbid(f"artist:{n}"), n, join) for n, join in credits),
    )


def _digest(name: str | None = "山田 花子") -> Digest:
    return Digest(
        subscriber=Subscriber(7, "hanako@example.net", name),
        partition_date=DAY,
        artists=(
            DigestArtist(
                mbid("artist:Björk"),
                "Björk",
                (
                    _release("Fossora II", ("Björk", "")),
                    _release(NASTY, ("Björk", " feat. "), ("ROSALÍA", ""), types=("Live",)),
                ),
            ),
            DigestArtist(
                mbid("artist:宇多田ヒカル"),
                "宇多田ヒカル",
                (_release("夜明け", ("宇多田ヒカル", "")),),
            ),
        ),
        unsubscribe_url=UNSUBSCRIBE,
    )


class _Html(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_subject_is_the_contract_format() -> None:
    assert render_digest(_digest()).subject == "New Music for November 23, 2026"


def test_html_escapes_titles_so_they_stay_text() -> None:
    html = render_digest(_digest()).html
    parsed = _Html(html)
    assert "script" not in parsed.tags
    assert NASTY in parsed.text
    assert "&lt;script&gt;" in html and "Love &amp; &lt;Hate&gt;" in html
    assert [image["alt"] for image in parsed.images] == ["Fossora II", NASTY, "夜明け"]


def test_html_groups_releases_under_artists_in_order_with_links() -> None:
    html = render_digest(_digest()).html
    parsed = _Html(html)
    text = " ".join(" ".join(parsed.text).split())
    text = text[text.index("Hi ") :]  # past the <style> block and the preheader
    assert text.index("Björk") < text.index("Fossora II") < text.index("宇多田ヒカル")
    assert text.index("Fossora II") < text.index("夜明け")
    assert "Hi 山田 花子" in text
    assert "3 new releases from 2 artists you follow came out on Monday, November 23, 2026." in text
    assert "2 releases" in text and "1 release" in text
    assert "Album + Live" in text
    assert f"https://musicbrainz.org/release-group/{mbid('rg:Fossora II')}" in parsed.links
    assert f"https://musicbrainz.org/artist/{mbid('artist:ROSALÍA')}" in parsed.links
    assert UNSUBSCRIBE in parsed.links
    covers = [image["src"] for image in parsed.images]
    assert covers[0] == (
        f"https://coverartarchive.org/release-group/{mbid('rg:Fossora II')}/front-250"
    )
    # A fixed-size box with a background colour, whether or not the cover loads.
    for image in parsed.images:
        assert (image["width"], image["height"]) == ("96", "96")
        assert "background-color" in (image["style"] or "")


def test_css_is_inlined_and_only_media_queries_stay_in_a_style_block() -> None:
    html = render_digest(_digest()).html
    assert '<h1 style="' in html
    style_block = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert style_block.strip().startswith("@media")


def test_preheader_names_the_artists() -> None:
    html = render_digest(_digest()).html
    assert "3 new releases from Björk and 宇多田ヒカル</div>" in html


def test_plain_text_reads_well() -> None:
    text = render_digest(_digest()).text
    lines = text.splitlines()
    assert lines[0] == "New Music for November 23, 2026"
    assert lines[1] == "=" * len(lines[0])
    assert "Hi 山田 花子," in lines
    assert NASTY in text  # no HTML escaping in the text part
    assert "Album + Live by Björk feat. ROSALÍA" in text
    assert f"https://musicbrainz.org/release-group/{mbid('rg:夜明け')}" in text
    assert "Björk (2 releases)" in lines
    # The CJK heading is underlined to its displayed width (two columns per character).
    heading = lines.index("宇多田ヒカル")
    assert lines[heading + 1] == "-" * 12
    assert "-- " in lines  # the standard signature separator before the footer
    assert text.rstrip().endswith(f"Unsubscribe with one click: {UNSUBSCRIBE}")
    assert "\n\n\n\n" not in text
    assert "{" not in text and "}" not in text


def test_no_name_greets_politely() -> None:
    rendered = render_digest(_digest(name=None))
    assert "Hi there," in rendered.text
    assert "Hi there," in " ".join(_Html(rendered.html).text)


def test_single_release_wording() -> None:
    digest = Digest(
        subscriber=Subscriber(1, "a@example.org", "Ann"),
        partition_date=DAY,
        artists=(DigestArtist(mbid("artist:A"), "A", (_release("Solo", ("A", "")),)),),
        unsubscribe_url=UNSUBSCRIBE,
    )
    rendered = render_digest(digest)
    assert "1 new release from the artist you follow came out" in rendered.text
    assert "A (" not in rendered.text


def test_helpers() -> None:
    assert long_date(DAY) == "Monday, November 23, 2026"
    assert display_width("Zoë") == 3
    assert display_width("山田 花子") == 9
    assert display_width("e\u0301") == 1  # a combining accent takes no column


def test_message_parts_stay_7bit_clean() -> None:
    from datetime import UTC, datetime

    from musicbutler_pipeline.mail.message import build_message

    def parts(name: str | None, title: str) -> dict[str, str]:
        digest = Digest(
            subscriber=Subscriber(1, "a@example.org", name),
            partition_date=DAY,
            artists=(DigestArtist(mbid("artist:A"), "A", (_release(title, ("A", "")),)),),
            unsubscribe_url=UNSUBSCRIBE,
        )
        message = build_message(
            render_digest(digest),
            mail_from="MusicButler <b@example.org>",
            to_name=name,
            to_address="a@example.org",
            message_id="<m@example.org>",
            unsubscribe_url=UNSUBSCRIBE,
            unsubscribe_mailto="mailto:b@example.org",
            sent_at=datetime(2026, 11, 23, tzinfo=UTC),
        )
        assert message.as_bytes().isascii()
        return {
            part.get_content_type(): part["Content-Transfer-Encoding"]
            for part in message.iter_parts()
        }

    # ASCII-only parts travel readable as they are; others are quoted-printable.
    assert parts("Ann", "Solo")["text/plain"] == "7bit"
    assert parts("Zoë", "Solo") == {
        "text/plain": "quoted-printable",
        "text/html": "quoted-printable",
    }

"""What a digest says about its releases: out that day or added to MusicBrainz late, one or many
of each, and who sent it (sender name and postal address), in the HTML and the text part alike."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from html import unescape

import pytest

from musicbutler_pipeline.domain.digest import EN_DASH, render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Sender,
    Subscriber,
)
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.settings import MAX_POSTAL_ADDRESS, Settings, SettingsError
from tests.builders import mbid

DAY = date(2026, 11, 22)


def _release(title: str, artist: str, released: date | None = DAY) -> ReleaseGroup:
    return ReleaseGroup(
        mbid=mbid(f"rg:{title}"),
        title=title,
        primary_type="Album",
        secondary_types=(),
        first_release_date=released.isoformat() if released else "2026",
        release_date=released,
        artists=(CreditedArtist(mbid(f"artist:{artist}"), artist),),
    )


def _digest(*artists: tuple[str, list[ReleaseGroup]], sender: Sender | None = None) -> Digest:
    return Digest(
        subscriber=Subscriber(7, "ann@example.org", "Ann"),
        partition_date=DAY,
        artists=tuple(
            DigestArtist(mbid(f"artist:{name}"), name, tuple(groups)) for name, groups in artists
        ),
        unsubscribe_url="https://mb.example/unsubscribe/7.x",
        sender=sender or Sender(),
    )


def _html_text(html: str) -> str:
    """The HTML part as a reader sees it: tags gone, entities decoded, spaces collapsed."""
    body = re.sub(r"<(style|title)\b.*?</\1>", " ", html, flags=re.S)
    body = re.sub(r'<div class="preheader".*?</div>', " ", body, flags=re.S)
    body = re.sub(r"</?span\b[^>]*>", "", body)  # inline: no word break
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def _both(digest: Digest) -> tuple[str, str]:
    """(text part, HTML part as text), each with whitespace collapsed so wrapping does not
    matter to the sentences checked."""
    rendered = render_digest(digest)
    return " ".join(rendered.text.split()), _html_text(rendered.html)


def _late(days_before: int) -> date:
    return DAY - timedelta(days=days_before)


def test_only_releases_of_the_day_say_they_came_out_that_day() -> None:
    digest = _digest(("Björk", [_release("Fossora II", "Björk")]))
    for part in _both(digest):
        assert (
            "Hi Ann, 1 new release from the artist you follow came out on Sunday, November 22,"
            " 2026." in part
        )
        assert "late" not in part  # no section headings when there is one kind only
        assert "Out on November 22" not in part
        assert "1 releases" not in part
        assert "follow this artist on MusicButler" in part


def test_many_releases_of_the_day_from_many_artists() -> None:
    digest = _digest(
        ("Björk", [_release("A", "Björk"), _release("B", "Björk")]),
        ("Four Tet", [_release("C", "Four Tet")]),
    )
    for part in _both(digest):
        assert "3 new releases from 2 artists you follow came out on Sunday, November 22" in part
        assert "follow these artists on MusicButler" in part
    assert "2 releases" in _both(digest)[1]  # the artist heading's count
    assert "1 release" in _both(digest)[1]


def test_a_digest_of_late_releases_only_never_says_they_came_out_that_day() -> None:
    digest = _digest(
        ("Björk", [_release("Old", "Björk", _late(8)), _release("Older", "Björk", _late(3))]),
    )
    for part in _both(digest):
        assert "came out on Sunday" not in part
        assert (
            "2 releases from the artist you follow were added to MusicBrainz late: they came out"
            " between November 14 and 19." in part
        )
    assert render_digest(digest).subject == "New Music for November 22, 2026"


def test_one_late_release_is_singular() -> None:
    digest = _digest(("Four Tet", [_release("Dub", "Four Tet", _late(1))]))
    for part in _both(digest):
        assert (
            "1 release from the artist you follow was added to MusicBrainz late: it came out"
            " on November 21." in part
        )


def test_a_late_release_without_a_full_date_says_earlier() -> None:
    digest = _digest(("Four Tet", [_release("Undated", "Four Tet", None)]))
    for part in _both(digest):
        assert "was added to MusicBrainz late: it came out earlier." in part


def test_late_releases_across_months_and_years_name_both_ends() -> None:
    new_year = date(2027, 1, 2)
    digest = Digest(
        subscriber=Subscriber(7, "ann@example.org", None),
        partition_date=new_year,
        artists=(
            DigestArtist(
                mbid("artist:A"),
                "A",
                (_release("X", "A", date(2026, 12, 28)), _release("Y", "A", date(2027, 1, 1))),
            ),
        ),
    )
    for part in _both(digest):
        assert "between December 28, 2026 and January 1, 2027." in part


def test_both_kinds_are_told_apart_in_two_sections() -> None:
    digest = _digest(
        ("Björk", [_release("Today", "Björk"), _release("Last week", "Björk", _late(8))]),
        ("Four Tet", [_release("Also late", "Four Tet", _late(3))]),
        ("Sigur Rós", [_release("Late too", "Sigur Rós", _late(5))]),
    )
    rendered = render_digest(digest)
    for part in _both(digest):
        assert (
            "1 new release from the artist you follow came out on Sunday, November 22, 2026."
            " Also, 3 earlier releases from 3 artists you follow were added to MusicBrainz"
            " late: they came out between November 14 and 19." in part
        )
        # The day's releases first, under their heading, then the late ones under theirs.
        today_at = part.upper().index("OUT ON NOVEMBER 22")
        late_at = part.upper().index(f"ADDED TO MUSICBRAINZ LATE (RELEASED NOVEMBER 14{EN_DASH}19)")
        assert today_at < part.index("Today") < late_at < part.index("Last week")
        assert late_at < part.index("Also late") and late_at < part.index("Late too")
    headings = re.findall(r"<h2\b[^>]*>(.*?)</h2>", rendered.html)
    assert headings == [
        "Out on November 22",
        f"Added to MusicBrainz late (released November 14{EN_DASH}19)",
    ]
    assert "OUT ON NOVEMBER 22" in rendered.text.splitlines()
    # Björk has one release in each section: each heading counts only its own.
    assert rendered.text.count("Björk (2 releases)") == 0
    assert "1 new release and 3 earlier, from Björk, Four Tet and Sigur Rós" in rendered.html


def test_a_release_whose_day_never_ran_is_not_called_late_in_musicbrainz() -> None:
    """Its day's run may simply not have happened: MusicBrainz may have had it all along."""
    digest = replace(
        _digest(
            ("Björk", [_release("Today", "Björk")]),
            (
                "Four Tet",
                [_release("Missed", "Four Tet", _late(2)), _release("Late", "Four Tet", _late(4))],
            ),
        ),
        unchecked_days=frozenset({_late(2)}),
    )
    rendered = render_digest(digest)
    for part in _both(digest):
        assert "MusicBrainz" not in part.replace("MusicBrainz →", "")
        assert (
            "Also, 2 earlier releases from the artist you follow were not announced before: they"
            " came out between November 18 and 20." in part
        )
    assert (
        re.findall(r"<h2\b[^>]*>(.*?)</h2>", rendered.html)[1]
        == f"Released earlier (November 18{EN_DASH}20)"
    )
    only_late = replace(digest, artists=digest.artists[1:], unchecked_days=frozenset())
    assert "were added to MusicBrainz late" in render_digest(only_late).text


def test_a_release_of_two_followed_artists_counts_once() -> None:
    shared = _release("Together", "Björk")
    digest = _digest(("Björk", [shared]), ("ROSALÍA", [shared]))
    for part in _both(digest):
        assert "1 new release from 2 artists you follow came out" in part


def test_footer_names_the_sender_and_its_postal_address() -> None:
    sender = Sender("Zoë's Music Club", "12 Example Street, 10115 Berlin, Germany")
    digest = _digest(("Björk", [_release("A", "Björk")]), sender=sender)
    text, html = _both(digest)
    for part in (text, html):
        assert "Sent by Zoë's Music Club · 12 Example Street, 10115 Berlin, Germany" in part
    markup = render_digest(_digest(("B", [_release("A", "B")]), sender=Sender("<b>Me</b>")))
    assert 'Sent by <span dir="auto">&lt;b&gt;Me&lt;/b&gt;</span>' in markup.html  # data


def test_footer_without_a_postal_address_names_only_the_sender() -> None:
    rendered = render_digest(_digest(("Björk", [_release("A", "Björk")])))
    assert "Sent by MusicButler" in rendered.text.splitlines()
    assert 'Sent by <span dir="auto">MusicButler</span></p>' in rendered.html


def test_the_sender_is_the_display_name_of_mail_from() -> None:
    def identity(mail_from: str, postal: str | None = None) -> MailIdentity:
        return MailIdentity(mail_from, "https://mb.example", b"k" * 32, postal)

    assert identity('"Ann\'s  Picks" <ann@example.org>', "1 Road").sender == Sender(
        "Ann's Picks", "1 Road"
    )
    assert identity("butler@example.org").sender == Sender("MusicButler", None)


def test_postal_address_setting() -> None:
    settings = Settings.from_env({"MUSICBUTLER_POSTAL_ADDRESS": " 1 Road, Town "})
    assert settings.postal_address == "1 Road, Town"
    assert Settings.from_env({}).postal_address is None
    with pytest.raises(SettingsError, match=r"^MUSICBUTLER_POSTAL_ADDRESS: must be one line"):
        Settings.from_env({"MUSICBUTLER_POSTAL_ADDRESS": "1 Road\nTown"})
    with pytest.raises(SettingsError, match=r"^MUSICBUTLER_POSTAL_ADDRESS: is 201 characters"):
        Settings.from_env({"MUSICBUTLER_POSTAL_ADDRESS": "x" * (MAX_POSTAL_ADDRESS + 1)})

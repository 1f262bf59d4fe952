"""Names and titles are data, not layout (issue 10): a line break or other control character in a
subscriber name, artist name or title never adds a line to the text part or a header, and a huge
one never makes a huge message. Shown at most: names 80 characters, artist names 100, titles 200,
join phrases 30, the last one an ellipsis when cut."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.models import CreditedArtist, Digest, DigestArtist, Subscriber
from musicbutler_pipeline.mail.message import build_message
from tests.builders import mbid
from tests.unit.test_digest import DAY, UNSUBSCRIBE, _Html, _release

BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def digest(name: str | None, artist: str, title: str, join: str = "") -> Digest:
    credits = [CreditedArtist(mbid("artist:main"), artist, join)]
    if join:
        credits.append(CreditedArtist(mbid("artist:guest"), "Guest", ""))
    release = replace(_release("main"), title=title, artists=tuple(credits))
    return Digest(
        subscriber=Subscriber(1, "a@example.org", name),
        partition_date=DAY,
        artists=(
            DigestArtist(mbid("artist:main"), artist, (release,)),
            DigestArtist(mbid("artist:Other"), "Other", (_release("Plain", ("Other", "")),)),
        ),
        unsubscribe_url=UNSUBSCRIBE,
    )


def message(d: Digest):
    return build_message(
        render_digest(d),
        mail_from="MusicButler <b@example.org>",
        to_name=d.subscriber.name,
        to_address=d.subscriber.email,
        message_id="<m@example.org>",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto="mailto:b@example.org",
        sent_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


BASELINE = render_digest(digest("Ann Smith", "Artist Name", "Release Title")).text.splitlines()


@pytest.mark.parametrize("brk", BREAKS, ids=[f"U+{ord(b[-1]):04X}" for b in BREAKS])
def test_a_line_break_in_any_name_or_title_adds_no_line(brk: str) -> None:
    text = render_digest(
        digest(f"Ann{brk}Smith", f"Artist{brk}Name", f"Release{brk}Title", join=f" feat.{brk}")
    ).text
    lines = text.splitlines()
    assert len(lines) == len(BASELINE)
    assert "Hi Ann Smith," in lines
    assert "Artist Name" in lines and "-----------" in lines
    assert "  Release Title" in lines
    assert "  Album by Artist Name feat. Guest" in lines


def test_control_characters_become_spaces_everywhere_in_the_text_part() -> None:
    nasty = "A\tB\x00C\x07D\x1bE\x7fF\x9bG"
    text = render_digest(digest(nasty, nasty, nasty)).text
    assert "A B C D E F G" in text
    assert not any(ch in text for ch in "\t\x00\x07\x1b\x7f\x9b")


def test_huge_names_and_titles_are_cut_with_an_ellipsis_and_the_message_stays_small() -> None:
    huge = digest("N" * 100_000, "A" * 100_000, "T" * 100_000, join="J" * 100_000)
    rendered = render_digest(huge)
    lines = rendered.text.splitlines()
    assert f"Hi {'N' * 79}…," in lines
    assert "A" * 99 + "…" in lines
    assert f"  {'T' * 199}…" in lines
    assert f"  Album by {'A' * 99}…{'J' * 29}…Guest" in lines
    parsed = _Html(rendered.html)
    assert "T" * 199 + "…" in parsed.text and "T" * 201 not in rendered.html
    assert ("N" * 79 + "…") in parsed.text and "N" * 81 not in rendered.html
    size = len(message(huge).as_bytes())
    normal = len(message(digest("Ann", "Artist", "Title")).as_bytes())
    assert size < normal + 6_000, (size, normal)


def received(d: Digest) -> EmailMessage:
    """The message as a mail client parses it from the wire."""
    return email.message_from_bytes(message(d).as_bytes(), policy=policy.default)  # type: ignore[return-value]


def test_the_to_display_name_is_one_line_and_capped() -> None:
    sent = digest("Ann\r\nBcc: everyone@example.org\n" + "N" * 100_000, "A", "T")
    built = received(sent)
    assert "Bcc" not in built and len(built.get_all("To") or []) == 1
    to = built["To"].addresses[0]
    assert to.addr_spec == "a@example.org"
    # (Python's parser puts a space between adjacent encoded-words, which RFC 2047 says to drop.)
    assert to.display_name.replace(" ", "") == "AnnBcc:everyone@example.org" + "N" * 49 + "…"
    headers = message(sent).as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert not any(line.startswith("Bcc") for line in headers.splitlines())
    assert len(headers) < 3_000


@pytest.mark.parametrize("length", range(1, 81))
def test_a_name_that_needs_quoting_never_changes_the_recipient(length: int) -> None:
    # Python's email package folds a long quoted display name by dropping its quotes, and
    # `Liam Bcc: everyone@example.org OOO… <a@example.org>` then reads as everyone@example.org.
    name = ('Liam Bcc: everyone@example.org, "Quoted" \\ ' + "O" * 80)[:length]
    built = received(digest(name, "A", "T"))
    [to] = built["To"].addresses
    assert to.addr_spec == "a@example.org"
    assert to.display_name.replace(" ", "") == name.replace(" ", "")
    headers = message(digest(name, "A", "T")).as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in headers.split(b"\r\n"))


def test_lone_surrogates_in_stored_text_render_and_encode() -> None:
    built = message(digest("Ann\ud800", "Art\udfffist", "Ti\ud800tle"))
    assert built.as_bytes().isascii()
    assert "Ti\ufffdtle" in built.get_body(("plain",)).get_content()


def test_names_with_only_control_characters_greet_politely() -> None:
    assert "Hi there," in render_digest(digest("\n\t ", "A", "T")).text

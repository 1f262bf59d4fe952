"""``encode_message`` writes the wire bytes itself (issue 15): they must mean exactly what the
email package writes for the same digest, built the way ``build_message`` used to build it
(EmailMessage, set_content, add_alternative, the SMTP policy). Headers byte for byte; each part's
headers byte for byte and its decoded content character for character (quoted-printable soft
breaks may fall elsewhere: binascii's lines are 76 characters, quoprimime's 78)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage

import pytest

from musicbutler_pipeline.domain.digest import RenderedDigest
from musicbutler_pipeline.mail.backends.memory import MemoryMailer
from musicbutler_pipeline.mail.message import (
    POLICY,
    _AddressHeader,
    _display_name,
    _header,
    _transfer_encoding,
    _UrlListHeader,
    encode_message,
)

SENT_AT = datetime(2026, 11, 23, 21, 35, 7, tzinfo=UTC)
UNSUBSCRIBE = "https://musicbutler.example/unsubscribe/" + "t" * 120
MAILTO = "mailto:butler@musicbutler.example?subject=unsubscribe%20" + "t" * 40
LONG_LINE = "x" * 1200
CASES = {
    "ascii": ("Ann Smith", "Hi Ann,\nA line.\n", "<p>Hi Ann</p>\n"),
    "non-ascii name and text": (
        "Zoë Ødegaard",
        "Hi Zoë,\nROSALÍA feat. 宇多田ヒカル\n",
        "<p>Zoë</p>",
    ),
    "quoting name": ("O'Connor, Liam", "Hi,\n", "<p>x</p>"),
    "header injection name": (
        "Liam Bcc: x@example.org OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO",
        "Hi,\n",
        "<p>x</p>",
    ),
    "no name": (None, "Hi,\n", "<p>x</p>"),
    "line longer than SMTP allows": ("Ann", f"{LONG_LINE}\nend\n", f"<p>{LONG_LINE}</p>"),
    "qp specials": (
        "Ann",
        "trailing space \nequals = sign\n.\n.leading dot\nFrom the start\ttab\t\nZoë\n",
        '<a href="https://x.example/?a=1&b=2">Zoë</a>\n',
    ),
    "no final newline, blank lines, CR": ("Ann", "one\r\n\r\ntwo\rthree", "<p>é</p>\n\n\n"),
}


def _reference(to_name: str | None, text: str, html: str) -> EmailMessage:
    """What the email package writes for the digest: ``build_message`` before issue 15."""
    message = EmailMessage(policy=POLICY)
    message["Subject"] = _header("Subject", "New Music for November 23, 2026")
    message["From"] = _header("From", "MusicButler <butler@musicbutler.example>")
    message["To"] = _AddressHeader("To", _display_name(to_name), "liam@example.org")
    message["Date"] = _header("Date", "Mon, 23 Nov 2026 21:35:07 +0000")
    message["Message-ID"] = _header("Message-ID", "<digest.20261123.abc@musicbutler.example>")
    message["List-Unsubscribe"] = _UrlListHeader("List-Unsubscribe", [UNSUBSCRIBE, MAILTO])
    message["List-Unsubscribe-Post"] = _header(
        "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"
    )
    message["Auto-Submitted"] = _header("Auto-Submitted", "auto-generated")
    message["X-Auto-Response-Suppress"] = _header("X-Auto-Response-Suppress", "OOF, AutoReply")
    message.set_content(text, subtype="plain", charset="utf-8", cte=_transfer_encoding(text))
    message.add_alternative(html, subtype="html", charset="utf-8", cte=_transfer_encoding(html))
    return message


def _encoded(to_name: str | None, text: str, html: str) -> bytes:
    return encode_message(
        RenderedDigest("New Music for November 23, 2026", text, html),
        mail_from="MusicButler <butler@musicbutler.example>",
        to_name=to_name,
        to_address="liam@example.org",
        message_id="<digest.20261123.abc@musicbutler.example>",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto=MAILTO,
        sent_at=SENT_AT,
    ).data


def _split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(top headers, [(part headers, part body)]) with the boundary replaced by a fixed one."""
    data = data.replace(_boundary_of(data), b"BOUNDARY")
    top, _, rest = data.partition(b"\r\n\r\n")
    chunks = rest.split(b"--BOUNDARY")
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n"
    return top, [tuple(chunk.lstrip(b"\r\n").split(b"\r\n\r\n", 1)) for chunk in chunks[1:-1]]  # type: ignore[misc]


@pytest.mark.parametrize(("to_name", "text", "html"), CASES.values(), ids=CASES.keys())
def test_the_wire_bytes_mean_what_the_email_package_writes(
    to_name: str | None, text: str, html: str
) -> None:
    reference = _reference(to_name, text, html).as_bytes()
    encoded = _encoded(to_name, text, html)
    # The boundary is random in both: ours takes the reference's.
    ours = encoded.replace(_boundary_of(encoded), _boundary_of(reference))
    assert ours.isascii() and b"\r\n" in ours and b"\n" not in ours.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))

    our_top, our_parts = _split(ours)
    reference_top, reference_parts = _split(reference)
    assert our_top == reference_top
    assert [headers for headers, _ in our_parts] == [headers for headers, _ in reference_parts]
    if b"quoted-printable" not in ours:
        assert ours == reference

    ours_parsed = message_from_bytes(ours, _class=EmailMessage, policy=POLICY)
    reference_parsed = message_from_bytes(reference, _class=EmailMessage, policy=POLICY)
    assert [str(ours_parsed[name]) for name in ours_parsed] == [
        str(reference_parsed[name]) for name in reference_parsed
    ]
    for ours_part, reference_part in zip(
        ours_parsed.iter_parts(), reference_parsed.iter_parts(), strict=True
    ):
        assert ours_part.get_content() == reference_part.get_content()


def _boundary_of(data: bytes) -> bytes:
    [boundary] = set(re.findall(rb'boundary="([^"]+)"', data))
    return boundary


def test_a_line_break_in_a_header_value_is_refused_as_the_email_package_does() -> None:
    with pytest.raises(ValueError, match="linefeed"):
        encode_message(
            RenderedDigest("New Music\r\nBcc: x@example.org", "Hi\n", "<p>x</p>"),
            mail_from="MusicButler <butler@musicbutler.example>",
            to_name="Ann",
            to_address="ann@example.org",
            message_id="<m@example.org>",
            unsubscribe_url=UNSUBSCRIBE,
            unsubscribe_mailto=MAILTO,
            sent_at=SENT_AT,
        )


def test_the_envelope_is_the_bare_addresses_and_other_backends_see_an_email_message() -> None:
    message = encode_message(
        RenderedDigest("New Music for November 23, 2026", "Hi Zoë\n", "<p>Zoë</p>"),
        mail_from="MusicButler <butler@musicbutler.example>",
        to_name="Zoë",
        to_address="zoe@example.org",
        message_id="<m@example.org>",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto=MAILTO,
        sent_at=SENT_AT,
    )
    assert message.envelope_from == "butler@musicbutler.example"
    assert message.recipients == ("zoe@example.org",)
    outbox = MemoryMailer()
    outbox.send(message)
    [kept] = outbox.messages
    assert kept["To"].addresses[0].display_name == "Zoë"
    assert kept["Message-ID"] == "<m@example.org>"
    assert kept.get_body(("plain",)).get_content() == "Hi Zoë\n"
    assert kept.as_bytes() == message.data

"""Turning a rendered digest into an RFC 5322 message with the headers mail clients expect."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Iterable
from datetime import date, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Self

from musicbutler_pipeline.domain.digest import SHOWN_SUBSCRIBER_NAME, RenderedDigest
from musicbutler_pipeline.domain.rules import shorten
from musicbutler_pipeline.mail.backends.base import OutgoingMessage

# RFC 5322 caps a line at 998 characters; leave room for the header name and the other URL.
_MAX_UNSUBSCRIBE_URL = 900


class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, minus its cost: ``HeaderRegistry.__getitem__`` builds a new
    class with ``type()`` for every header it parses (measured: a third of building a digest).
    The class for a header name never changes, so it is built once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        header_class = self._classes.get(key)
        if header_class is None:
            header_class = self._classes[key] = super().__getitem__(name)
        return header_class


# The SMTP policy (CRLF line ends, RFC-compliant folding) with the header classes cached.
POLICY = SMTP.clone(header_factory=_HeaderClasses())
# A header line that needs no folding and no encoding: "Name: value" is all there is to write.
_SHORT_HEADER = 78


class _VerbatimHeader(str):
    """A header whose value is printable ASCII and fits on a line, written as it is.

    What the email package would write too, without parsing it into a header object and refolding
    it at every flatten (the bulk of the cost of each message's plain headers). Any other value
    (non-ASCII, too long) goes through the policy as usual: see ``_header``.
    """

    name: str

    def __new__(cls, name: str, value: str) -> Self:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _header(name: str, value: str) -> str:
    if (
        value.isascii()
        and value.isprintable()
        and value == value.strip()
        and "  " not in value
        and len(name) + 2 + len(value) <= _SHORT_HEADER
    ):
        return _VerbatimHeader(name, value)
    return value


def message_id(subscriber_id: int, partition_date: date, mail_from: str) -> str:
    """The same (subscriber, day) always yields the same Message-ID, so that a resend after a
    crash can be recognised and deduplicated downstream."""
    digest = hashlib.sha256(f"{subscriber_id}:{partition_date.isoformat()}".encode()).hexdigest()
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<digest.{partition_date:%Y%m%d}.{digest[:24]}@{domain}>"


class _UrlListHeader(str):
    """A header made of ``<URL>`` items (RFC 2369), folded only between items.

    The email package treats List-Unsubscribe as unstructured text and, once a URL is longer than
    a line, rewrites it as RFC 2047 encoded-words (``=?utf-8?q?=3Chttps...``), which no mail
    client reads as a link. The policy hands any value with a matching ``name`` attribute to its
    own ``fold`` instead.
    """

    name: str

    def __new__(cls, name: str, urls: list[str]) -> Self:
        for url in urls:
            if len(url) > _MAX_UNSUBSCRIBE_URL or not url.isascii() or any(c in url for c in "<> "):
                raise ValueError(f"{name}: {url[:80]!r} cannot go in a header")
        header = super().__new__(cls, ", ".join(f"<{url}>" for url in urls))
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        separator = "," + policy.linesep + " "
        return f"{self.name}: {separator.join(self.split(', '))}{policy.linesep}"


def _transfer_encoding(body: str) -> str:
    """``7bit`` when the part may travel as it is, else ``quoted-printable``: either way the
    message stays 7-bit clean, so no relay on the way needs 8BITMIME."""
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable"


def _display_name(name: str | None) -> str:
    """A name fit for an address header: no control characters, which could split the header,
    and no longer than the digest's greeting shows it."""
    printable = " ".join("".join(c if c.isprintable() else " " for c in name or "").split())
    return shorten(printable, SHOWN_SUBSCRIBER_NAME)


# RFC 5322 atext: a display name made only of these (and spaces) is a phrase of plain words.
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
# An RFC 2047 encoded-word is at most 75 characters: "=?utf-8?b?" + 60 base64 + "?=" is 72.
_ENCODED_WORD_BYTES = 45
# A quoted string is never split (that is where the email package goes wrong): at most a line.
_QUOTED_MAX = 76


def _phrase_words(display_name: str) -> list[str]:
    """The display name as words to fold between: plain words when it is ASCII atext, one
    quoted string when it is other ASCII that fits on a line, else RFC 2047 encoded-words
    (base64 of whole characters, each word short enough for a line)."""
    if all(char in _ATEXT or char == " " for char in display_name):
        return display_name.split()
    if display_name.isascii():
        quoted = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= _QUOTED_MAX:
            return [quoted]
    words: list[str] = []
    chunk = b""
    for char in display_name:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = b""
        chunk += encoded
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return words


class _AddressHeader(str):
    """A one-address header (To) whose display name always arrives as it was meant.

    The email package (Python 3.11) folds a display name that needs quoting and does not fit on
    a line by dropping its quotes: ``"Liam Bcc: x@example.org OOO…" <liam@…>`` went out as
    ``Liam Bcc: x@example.org`` + fold + ``OOO… <liam@…>``, which a mail client reads as the
    address x@example.org. So names that are not plain words travel as encoded-words, which fold
    safely, and the header is folded between words here (as ``_UrlListHeader`` does). The string
    value is the usual ``"Name" <address>``, which smtplib reads for the envelope.
    """

    name: str
    words: list[str]

    def __new__(cls, name: str, display_name: str, address: str) -> Self:
        local, _, domain = address.rpartition("@")
        header = super().__new__(
            cls, str(Address(display_name=display_name, username=local, domain=domain))
        )
        header.name = name
        header.words = [*_phrase_words(display_name), f"<{address}>"]
        return header

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or 998
        lines = [f"{self.name}:"]
        for word in self.words:
            if len(lines[-1]) + 1 + len(word) > limit and lines[-1]:
                lines.append("")
            lines[-1] += " " + word
        return policy.linesep.join(lines) + policy.linesep


def _folded_header(name: str, value: str) -> bytes:
    """One header line as the email package writes it (the SMTP policy's folding and encoding;
    a value with a line break is refused, as ``EmailMessage.__setitem__`` does)."""
    return POLICY.fold_binary(*POLICY.header_store_parse(name, _header(name, value)))


# The same From, Subject and Date for a whole day (a whole second) of messages: folded once.
_folded_common_header = lru_cache(maxsize=256)(_folded_header)

_PART_HEADERS = {
    subtype: {
        cte: f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n".encode("ascii")
        # The email package's add_alternative gives the second part its own MIME-Version.
        + (b"MIME-Version: 1.0\r\n" if subtype == "html" else b"")
        for cte in ("7bit", "quoted-printable")
    }
    for subtype in ("plain", "html")
}


def _encoded_body(body: str, cte: str) -> bytes:
    """The part's body on the wire, CRLF line ends. As the email package's content manager does
    (the UTF-8 text split at its line ends), but quoted-printable by ``binascii`` in C rather
    than by ``email.quoprimime`` in Python, which was most of the cost of a digest's bytes."""
    lines = body.encode("utf-8").splitlines()
    if cte == "7bit":
        return b"\r\n".join(lines) + b"\r\n"
    encoded = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _boundary(parts: Iterable[bytes]) -> bytes:
    """A multipart boundary in the email package's form, not found in any part."""
    while True:
        boundary = f"{'=' * 15}{secrets.randbelow(10**19):019d}==".encode("ascii")
        if not any(boundary in part for part in parts):
            return boundary


def encode_message(
    rendered: RenderedDigest,
    *,
    mail_from: str,
    to_name: str | None,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    sent_at: datetime,
) -> OutgoingMessage:
    """The digest as the bytes an SMTP server receives, built once: the headers the email
    package would write (same folding and encoding, constant ones folded once), then a
    multipart/alternative of the text and HTML parts, each 7bit when it may travel as it is,
    else quoted-printable, so the message stays 7-bit clean. ``build_message`` is the same
    message as an EmailMessage."""
    headers = [
        _folded_common_header("Subject", rendered.subject),
        _folded_common_header("From", mail_from),
        # "O'Connor, Liam" and "Zoë" travel RFC 2047-encoded, "Ann Smith" as it is.
        POLICY.fold_binary("To", _AddressHeader("To", _display_name(to_name), to_address)),
        _folded_common_header("Date", format_datetime(sent_at)),
        _folded_header("Message-ID", message_id),
        # RFC 2369 and RFC 8058: one-click unsubscribe for mail clients that offer it. The HTTPS
        # link comes first: RFC 8058 one-click applies to the first http(s) URI.
        POLICY.fold_binary(
            "List-Unsubscribe",
            _UrlListHeader("List-Unsubscribe", [unsubscribe_url, unsubscribe_mailto]),
        ),
        _folded_common_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        # Tell auto-responders (out-of-office and the like) not to answer a digest.
        _folded_common_header("Auto-Submitted", "auto-generated"),
        _folded_common_header("X-Auto-Response-Suppress", "OOF, AutoReply"),
    ]
    parts = []
    for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
        cte = _transfer_encoding(body)
        parts.append(_PART_HEADERS[subtype][cte] + b"\r\n" + _encoded_body(body, cte))
    boundary = _boundary(parts)
    data = b"".join(
        [
            *headers,
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n\r\n',
            *(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts),
            b"--" + boundary + b"--\r\n",
        ]
    )
    return OutgoingMessage(
        envelope_from=parseaddr(mail_from)[1],
        recipients=(to_address,),
        message_id=message_id,
        data=data,
    )


def build_message(
    rendered: RenderedDigest,
    *,
    mail_from: str,
    to_name: str | None,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    sent_at: datetime,
) -> EmailMessage:
    """The message ``encode_message`` builds, as an EmailMessage (for a look inside it)."""
    return encode_message(
        rendered,
        mail_from=mail_from,
        to_name=to_name,
        to_address=to_address,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        sent_at=sent_at,
    ).as_email()

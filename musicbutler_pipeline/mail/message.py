"""Turning a rendered digest into an RFC 5322 message with the headers mail clients expect."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from typing import Self

from musicbutler_pipeline.domain.digest import SHOWN_SUBSCRIBER_NAME, RenderedDigest
from musicbutler_pipeline.domain.rules import shorten

# RFC 5322 caps a line at 998 characters; leave room for the header name and the other URL.
_MAX_UNSUBSCRIBE_URL = 900


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
    message = EmailMessage(policy=SMTP)
    message["Subject"] = rendered.subject
    message["From"] = mail_from
    local, _, domain = to_address.rpartition("@")
    # Address() quotes and RFC 2047-encodes the name as needed ("O'Connor, Liam", "Zoë").
    message["To"] = Address(display_name=_display_name(to_name), username=local, domain=domain)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    # RFC 2369 and RFC 8058: one-click unsubscribe for mail clients that offer it. The HTTPS link
    # comes first: RFC 8058 one-click applies to the first http(s) URI.
    message["List-Unsubscribe"] = _UrlListHeader(
        "List-Unsubscribe", [unsubscribe_url, unsubscribe_mailto]
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Tell auto-responders (out-of-office and the like) not to answer a digest.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    message.set_content(
        rendered.text, subtype="plain", charset="utf-8", cte=_transfer_encoding(rendered.text)
    )
    message.add_alternative(
        rendered.html, subtype="html", charset="utf-8", cte=_transfer_encoding(rendered.html)
    )
    return message

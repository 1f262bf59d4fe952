"""Unsubscribe links: signed tokens that never expire, and the URLs that carry them.

A token is ``<subscriber id>.<signature>``, the signature being the first 16 bytes of
HMAC-SHA256(``MUSICBUTLER_SECRET_KEY``, purpose + id), base64url without padding. Tokens do not
expire on purpose: an unsubscribe link in a years-old email must still work (RFC 8058 asks for
links that keep working). Changing the key invalidates every link already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import quote

from musicbutler_pipeline.domain.models import DEFAULT_SENDER_NAME, Sender

_PURPOSE = b"musicbutler-unsubscribe-v1:"
_MAC_BYTES = 16
# ASCII digits only: str.isdigit() also accepts characters such as "²" that int() rejects.
_TOKEN = re.compile(r"^(?P<id>[1-9][0-9]{0,18})\.(?P<signature>[A-Za-z0-9_-]{22})$")

UNSUBSCRIBE_PATH = "/unsubscribe/"


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


def make_token(subscriber_id: int, key: bytes) -> str:
    if subscriber_id <= 0:
        raise ValueError(f"subscriber id must be positive, got {subscriber_id}")
    mac = hmac.new(key, _PURPOSE + str(subscriber_id).encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac[:_MAC_BYTES]).rstrip(b"=").decode()
    return f"{subscriber_id}.{signature}"


def read_token(token: str, key: bytes) -> int:
    """The subscriber id a genuine token names; InvalidToken for anything else."""
    match = _TOKEN.match(token)
    if match is None:
        raise InvalidToken("malformed unsubscribe token")
    subscriber_id = int(match["id"])
    if not hmac.compare_digest(make_token(subscriber_id, key).encode(), token.encode()):
        raise InvalidToken("unsubscribe token signature does not match")
    return subscriber_id


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """The two ``List-Unsubscribe`` targets of one subscriber's email.

    ``url`` is the one-click HTTPS link (``musicbutler web`` serves it); ``mailto`` goes to the
    sender's mailbox with the token in the subject, for clients that only offer mail.
    """

    url: str
    mailto: str


def unsubscribe_links(
    subscriber_id: int, *, base_url: str, mail_from: str, key: bytes
) -> UnsubscribeLinks:
    token = make_token(subscriber_id, key)
    address = parseaddr(mail_from)[1]
    return UnsubscribeLinks(
        url=f"{base_url.rstrip('/')}{UNSUBSCRIBE_PATH}{token}",
        mailto=f"mailto:{quote(address, safe='@')}?subject={quote('unsubscribe ' + token)}",
    )


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """Who the digests come from and where their unsubscribe links point."""

    mail_from: str
    base_url: str
    secret_key: bytes = field(repr=False)
    postal_address: str | None = None

    @property
    def sender(self) -> Sender:
        """The digest footer's sender: From's display name (``MusicButler`` when it has none)
        and the postal address."""
        name = " ".join(parseaddr(self.mail_from)[0].split())
        return Sender(name or DEFAULT_SENDER_NAME, self.postal_address)

    def unsubscribe_links(self, subscriber_id: int) -> tuple[str, str]:
        """(one-click HTTPS URL, mailto) for the List-Unsubscribe header and the digest."""
        links = unsubscribe_links(
            subscriber_id, base_url=self.base_url, mail_from=self.mail_from, key=self.secret_key
        )
        return links.url, links.mailto

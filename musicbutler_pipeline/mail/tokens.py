"""Unsubscribe and preferences links: signed tokens that never expire, and the URLs that carry them.

A token is ``<subscriber id>.<signature>``, the signature being the first 16 bytes of
HMAC-SHA256(``MUSICBUTLER_SECRET_KEY``, purpose + id), base64url without padding. Each kind of
link has its own purpose, so an unsubscribe token is not a preferences token nor the other way
round, though both are made with the same key. Tokens do not
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
_PREFERENCES_PURPOSE = b"musicbutler-preferences-v1:"
_MAC_BYTES = 16
# ASCII digits only: str.isdigit() also accepts characters such as "²" that int() rejects.
_TOKEN = re.compile(r"^(?P<id>[1-9][0-9]{0,18})\.(?P<signature>[A-Za-z0-9_-]{22})$")

UNSUBSCRIBE_PATH = "/unsubscribe/"
PREFERENCES_PATH = "/preferences/"


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


def _sign(subscriber_id: int, key: bytes, purpose: bytes) -> str:
    if subscriber_id <= 0:
        raise ValueError(f"subscriber id must be positive, got {subscriber_id}")
    mac = hmac.new(key, purpose + str(subscriber_id).encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac[:_MAC_BYTES]).rstrip(b"=").decode()
    return f"{subscriber_id}.{signature}"


def _read(token: str, key: bytes, purpose: bytes, what: str) -> int:
    match = _TOKEN.match(token)
    if match is None:
        raise InvalidToken(f"malformed {what} token")
    subscriber_id = int(match["id"])
    if not hmac.compare_digest(_sign(subscriber_id, key, purpose).encode(), token.encode()):
        raise InvalidToken(f"{what} token signature does not match")
    return subscriber_id


def make_token(subscriber_id: int, key: bytes) -> str:
    """The unsubscribe token of a subscriber."""
    return _sign(subscriber_id, key, _PURPOSE)


def read_token(token: str, key: bytes) -> int:
    """The subscriber id a genuine unsubscribe token names; InvalidToken for anything else."""
    return _read(token, key, _PURPOSE, "unsubscribe")


def make_preferences_token(subscriber_id: int, key: bytes) -> str:
    """The token of a subscriber's "Manage preferences" link."""
    return _sign(subscriber_id, key, _PREFERENCES_PURPOSE)


def read_preferences_token(token: str, key: bytes) -> int:
    """The subscriber id a genuine preferences token names; InvalidToken for anything else
    (an unsubscribe token included)."""
    return _read(token, key, _PREFERENCES_PURPOSE, "preferences")


def preferences_url(subscriber_id: int, *, base_url: str, key: bytes) -> str:
    token = make_preferences_token(subscriber_id, key)
    return f"{base_url.rstrip('/')}{PREFERENCES_PATH}{token}"


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
    """Who the digests come from and where their unsubscribe and preferences links point."""

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

    def preferences_url(self, subscriber_id: int) -> str:
        """The digest's "Manage preferences" link: ``<base URL>/preferences/<token>``."""
        return preferences_url(subscriber_id, base_url=self.base_url, key=self.secret_key)

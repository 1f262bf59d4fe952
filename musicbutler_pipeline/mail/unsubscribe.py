"""Signed, non-expiring unsubscribe tokens (HMAC-SHA256 over the subscriber id)."""

from __future__ import annotations

import base64
import hashlib
import hmac

_PURPOSE = b"musicbutler-unsubscribe-v1:"
_MAC_BYTES = 16


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


def make_token(subscriber_id: int, key: bytes) -> str:
    mac = hmac.new(key, _PURPOSE + str(subscriber_id).encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac[:_MAC_BYTES]).rstrip(b"=").decode()
    return f"{subscriber_id}.{signature}"


def read_token(token: str, key: bytes) -> int:
    """The subscriber id a genuine token names; InvalidToken for anything else."""
    subscriber_part, _, _signature = token.partition(".")
    if not subscriber_part.isdigit() or len(subscriber_part) > 19:
        raise InvalidToken("malformed unsubscribe token")
    subscriber_id = int(subscriber_part)
    if not hmac.compare_digest(make_token(subscriber_id, key), token):
        raise InvalidToken("unsubscribe token signature does not match")
    return subscriber_id

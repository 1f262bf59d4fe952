"""The send ledger's vocabulary: the states a row of ``sends`` can be in, and how far the SMTP
transaction got. Plain values, shared by the ledger (warehouse), the mail backends and the
Dagster layer, so a state is spelled once."""

from __future__ import annotations

import enum


class SendState(enum.StrEnum):
    """The state of one ``sends`` row (one subscriber's email for one day)."""

    CLAIMED = "claimed"  # a sender holds the row and has not recorded an outcome yet
    SENT = "sent"
    FAILED = "failed"  # temporarily (retried by a later run) or permanently (never retried)
    UNKNOWN = "unknown"  # the whole message went out but the final reply never came


class SendPhase(enum.StrEnum):
    """How far one SMTP transaction got; ``sends.phase`` records it."""

    CLAIMED = "claimed"  # the ledger row exists; nothing was said to a server yet
    CONNECT = "connect"  # connection, greeting, EHLO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    BODY = "body"  # the message is being written: from here on the server may store it
    REPLY = "reply"  # the terminator is out, waiting for the final reply
    ACCEPTED = "accepted"


# Phases from which the server may hold a copy: a resend could deliver a second one.
MAY_HAVE_BEEN_DELIVERED = frozenset({SendPhase.BODY, SendPhase.REPLY, SendPhase.ACCEPTED})
# States of a row whose subscriber is still owed the day's email.
UNSENT_STATES = (SendState.FAILED, SendState.UNKNOWN, SendState.CLAIMED)

"""The send ledger's vocabulary: the states a row of ``sends`` can be in, how far the SMTP
transaction got, and the values the ledger (warehouse/ledger.py) takes and returns. Plain values,
shared by the ledger, the mail backends and the Dagster layer, so a state is spelled once."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta


class SendState(enum.StrEnum):
    """The state of one ``sends`` row (one subscriber's email for one day)."""

    CLAIMED = "claimed"  # a sender holds the row and has not recorded an outcome yet
    SENT = "sent"
    FAILED = "failed"  # temporarily (retried by a later run) or permanently (never retried)
    UNKNOWN = "unknown"  # the whole message went out but the final reply never came


class SendPhase(enum.StrEnum):
    """How far one SMTP transaction got; ``sends.phase`` records it. Up to and including
    ``DATA`` (the DATA command and its 354) nothing can have been delivered."""

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

# A claim this old without an outcome belongs to a sender that died (sends take seconds).
STALE_AFTER = timedelta(minutes=30)
# How far back health checks (doctor) look for days with owed email not sent.
OWED_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Sender:
    """The identity recorded on every claim: which run, host, process and code sent it
    (``processes.current_sender`` gives this process's)."""

    run_id: str
    host: str
    pid: int
    code_version: str


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"  # this sender owns the row and must send
    ALREADY_SENT = "already_sent"
    IN_PROGRESS = "in_progress"  # another sender holds the claim (or died holding it)
    FAILED_PERMANENT = "failed_permanent"
    OUTCOME_UNKNOWN = "outcome_unknown"  # sent once, reply lost: waits for an operator


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    send_id: int
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SentMark:
    """An email the server accepted whose sent mark is not written yet: the ledger writes it in
    the transaction of the sender's next claim (``SendLedger.claim(settle=...)``), one commit for
    both. Until then its row stays claimed at phase ``body``: a crash leaves it reported, as
    "may have been delivered", never sent again automatically."""

    claim: Claim
    partition_date: date
    subscriber_id: int
    release_group_mbids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendRow:
    partition_date: date
    subscriber_id: int
    recipient: str
    state: SendState
    run_id: str
    host: str
    pid: int
    code_version: str
    message_id: str
    release_group_count: int
    attempts: int
    claimed_at: datetime
    sent_at: datetime | None
    error: str | None
    phase: SendPhase
    permanent_failure: bool

    @property
    def may_have_been_delivered(self) -> bool:
        """Whether the message body went out (or further) for this row."""
        return self.phase in MAY_HAVE_BEEN_DELIVERED


@dataclass(frozen=True, slots=True)
class UnsentDay:
    """A day with subscribers owed an email that is not marked sent."""

    partition_date: date
    retryable: int  # failed temporarily: a run of the day tries again
    unknown: int  # outcome unknown: an operator decides
    rejected: int  # failed permanently (5xx for the recipient): never retried
    claimed: int  # a claim without an outcome (in progress, or its sender died)
    never_claimed: int  # owed, subscribed, no ledger row at all

    @property
    def total(self) -> int:
        return self.retryable + self.unknown + self.rejected + self.claimed + self.never_claimed

    @property
    def needs_attention(self) -> int:
        """Unsent for a reason other than a rejected address."""
        return self.total - self.rejected

    def describe(self) -> str:
        parts = [
            f"{count} {what}"
            for count, what in (
                (self.retryable, "failed temporarily"),
                (self.unknown, "outcome unknown"),
                (self.claimed, "claimed without outcome"),
                (self.never_claimed, "never attempted"),
                (self.rejected, "rejected permanently"),
            )
            if count
        ]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RetryableDay:
    partition_date: date
    failures: int
    attempts: int  # the most tries any of them had
    last_failed_at: datetime


class ReconcileAction(enum.Enum):
    RESEND = "resend"
    MARK_SENT = "mark-sent"


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    changed: int
    left_alone: list[SendRow]  # claims whose sender may still be alive


class LostClaim(RuntimeError):
    """The claim this sender held was resolved by someone else while it was sending."""


def stale_send_refusal(day: date, today: date, max_send_age_days: int) -> str | None:
    """Why ``day`` may not be sent on ``today`` without the operator's say-so, or None: its
    digests announce "new music" that is more than ``max_send_age_days`` old."""
    age = (today - day).days
    if age <= max_send_age_days:
        return None
    return (
        f"refused: {day} is {age} days old, older than MUSICBUTLER_MAX_SEND_AGE_DAYS="
        f"{max_send_age_days}; nothing was sent (to send anyway: `musicbutler run --date {day} "
        "--allow-old`, or the run tag musicbutler/allow-old-send=true)"
    )

"""The interface every mail backend implements, and the failures it reports.

Every backend connects lazily (on the first send) and is a context manager for one batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from types import TracebackType
from typing import Self, cast

from musicbutler_pipeline.domain.sends import SendPhase

BeforeBody = Callable[[], None]

# Headers already folded for the wire are written again as they are: the email package would
# refold a long List-Unsubscribe into encoded-words that no mail client reads as links.
_AS_FOLDED = SMTP.clone(refold_source="none")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready for the wire: its envelope and its RFC 5322 bytes (CRLF line ends, 7-bit
    clean), built once. What the SMTP backend hands to the server as it is, without the email
    package parsing and flattening it again; ``as_email`` is the same message as an EmailMessage
    for backends and tests that look inside it."""

    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes

    def as_email(self) -> EmailMessage:
        # Parsed with Python's line ends, as the email package holds a message it built (its
        # parts' content then reads "\n", not "\r\n"); the SMTP policy writes CRLF again.
        parsed = BytesParser(policy=_AS_FOLDED).parsebytes(self.data.replace(b"\r\n", b"\n"))
        return cast(EmailMessage, parsed)


# What every backend accepts: a message built by ``mail.message.encode_message``, or any
# EmailMessage (its envelope read from its headers, as smtplib's ``send_message`` does).
Message = EmailMessage | OutgoingMessage


def as_email(message: Message) -> EmailMessage:
    return message.as_email() if isinstance(message, OutgoingMessage) else message


class MailError(Exception):
    """A message was not accepted. ``permanent`` failures must not be retried.

    ``code`` is the SMTP reply code when a server gave one; the message then carries the server's
    reply text, e.g. ``RCPT TO refused: 550 5.1.1 no such user``.
    """

    outcome_unknown = False

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: int | None = None,
        phase: SendPhase | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.phase = phase

    def with_message(self, message: str) -> MailError:
        """The same failure with another text (used to scrub a password out of it)."""
        return MailError(message, permanent=self.permanent, code=self.code, phase=self.phase)


class MailOutcomeUnknown(MailError):
    """The whole message went out, but the server's final reply never came (timed out, dropped,
    garbled). The server may have stored it: sending it again could be a second copy, so this is
    never retried, neither by the mailer nor by a later run; ``musicbutler sends reconcile``
    resolves it."""

    outcome_unknown = True

    def __init__(self, message: str, *, phase: SendPhase = SendPhase.REPLY) -> None:
        super().__init__(message, permanent=False, phase=phase)

    def with_message(self, message: str) -> MailError:
        return MailOutcomeUnknown(message, phase=self.phase or SendPhase.REPLY)


class Mailer(ABC):
    """Sends one message at a time; may hold a connection open between sends."""

    @abstractmethod
    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        """Hand the message over for delivery, or raise MailError.

        ``before_body`` is called once, just before the message itself goes out: the last
        moment at which a crash certainly leaves the recipient without a copy.
        """

    @property
    def connections(self) -> int:
        """How many messages may be sent at once (from as many threads); most send one."""
        return 1

    def close(self) -> None:  # noqa: B027 - most transports hold nothing open
        """Release any connection."""

    @property
    def description(self) -> str:
        return type(self).__name__

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

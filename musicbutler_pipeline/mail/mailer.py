"""Mail transports chosen by URL scheme, like Django's mail backends.

``smtp://`` / ``smtps://`` deliver to a server, ``file:///dir`` writes one ``.eml`` per message,
``console://`` writes messages to a stream, and ``RecordingMailer`` keeps them in memory for tests.
Every transport connects lazily (on the first send) and is a context manager for one batch.

The SMTP URL (see docs/email.md)::

    smtp://[user[:password]@]host[:port][?starttls=1&timeout=30&data_timeout=600&rate=10&retries=3&backoff=1]
    smtps://[user[:password]@]host[:port][?...]

Everything up to the end of DATA is safe to retry. Once the terminating ``CRLF.CRLF`` has been
written the server may have stored the message, so a lost or late final reply raises
``MailOutcomeUnknown``, which is never retried: only an operator can tell whether it arrived.

``MUSICBUTLER_SMTP_PASSWORD`` overrides a password in the URL; neither ever appears in a
description, a repr, a log line or an error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import re
import smtplib
import socket
import ssl
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self, TextIO, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from musicbutler_pipeline.domain.sends import SendPhase

if TYPE_CHECKING:
    from typing_extensions import Buffer

logger = logging.getLogger(__name__)

# RFC 5321 4.5.3.2.6: a client should wait 10 minutes for the reply to the end of DATA, because
# the server may be filtering or relaying the message before it answers.
DATA_REPLY_TIMEOUT = 600.0

BeforeBody = Callable[[], None]

_ANY_LINE_END = re.compile(r"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


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
        phase: str | None = None,
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

    def __init__(self, message: str, *, phase: str = SendPhase.REPLY) -> None:
        super().__init__(message, permanent=False, phase=phase)

    def with_message(self, message: str) -> MailError:
        return MailOutcomeUnknown(message, phase=self.phase or SendPhase.REPLY)


class Mailer(ABC):
    """Sends one message at a time; may hold a connection open between sends."""

    @abstractmethod
    def send(self, message: EmailMessage, *, before_body: BeforeBody | None = None) -> None:
        """Hand the message over for delivery, or raise MailError.

        ``before_body`` is called once, just before the message itself goes out: the last
        moment at which a crash certainly leaves the recipient without a copy.
        """

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


class FileMailer(Mailer):
    """One ``.eml`` file per message in a folder (the local outbox)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def description(self) -> str:
        return f"outbox {self.directory}"

    def path_for(self, message: EmailMessage) -> Path:
        message_id = str(message["Message-ID"] or "").strip("<> ")
        if not message_id:
            raise MailError("message has no Message-ID", permanent=True)
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", message_id) + ".eml")

    def send(self, message: EmailMessage, *, before_body: BeforeBody | None = None) -> None:
        target = self.path_for(message)
        self.directory.mkdir(parents=True, exist_ok=True)
        if before_body is not None:
            before_body()
        # Write then rename, so a crash never leaves half a message in the outbox.
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(message.as_bytes())
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise MailError(f"cannot write {target}: {exc}", permanent=False) from exc


class ConsoleMailer(Mailer):
    """Writes each message to a stream (standard output by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    @property
    def description(self) -> str:
        return "console"

    def send(self, message: EmailMessage, *, before_body: BeforeBody | None = None) -> None:
        if before_body is not None:
            before_body()
        stream = self.stream or sys.stdout
        stream.write(message.as_string())
        stream.write("\n" + "-" * 79 + "\n")
        stream.flush()


class RecordingMailer(Mailer):
    """Keeps messages in memory: the test implementation. ``fail_for`` maps addresses to
    MailErrors to raise instead of accepting."""

    def __init__(self, fail_for: dict[str, MailError] | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.fail_for = fail_for or {}

    def send(self, message: EmailMessage, *, before_body: BeforeBody | None = None) -> None:
        for address, error in self.fail_for.items():
            if address in str(message["To"]):
                if error.outcome_unknown:
                    # Like a server that stored the message and never answered.
                    if before_body is not None:
                        before_body()
                    self.messages.append(message)
                raise error
        if before_body is not None:
            before_body()
        self.messages.append(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often one message is tried when the failure is temporary, and how long to wait.

    ``attempts`` counts every try, the first included. Waits double from ``backoff`` seconds up
    to ``max_backoff``: a greylisting server (451) or a restarting relay usually recovers within
    seconds, and a bounded wait keeps one bad recipient from stalling the day's batch.
    """

    attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        return min(self.max_backoff, self.backoff * 2 ** (retry - 1))


class _Temporary(Exception):
    """An attempt failed in a way another attempt may fix.

    ``connection`` is True when the connection itself failed (refused, dropped, timed out, 421),
    as opposed to the server deferring this one recipient or message (451, 452 ...).
    """

    def __init__(
        self,
        reason: str,
        *,
        connection: bool,
        code: int | None = None,
        phase: str | None = SendPhase.CONNECT,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connection = connection
        self.code = code
        self.phase = phase


class _OutcomeUnknown(Exception):
    """Raised inside the transaction once the terminator is out and no usable reply came."""


class _PhasedTransaction:
    """smtplib's MAIL, RCPT and DATA, keeping track of the phase reached, with DATA split at the
    point where the outcome stops being knowable (``smtplib.SMTP.data`` does not expose it).

    Mixed into ``smtplib.SMTP`` / ``SMTP_SSL``; everything but DATA is smtplib's own code.
    """

    phase: str = SendPhase.CONNECT
    before_body: BeforeBody | None = None
    command_timeout: float = 30.0
    reply_timeout: float = DATA_REPLY_TIMEOUT

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.phase = SendPhase.MAIL
        return super().mail(sender, options)  # type: ignore[misc]

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.phase = SendPhase.RCPT
        return super().rcpt(recip, options)  # type: ignore[misc]

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        smtp = cast(smtplib.SMTP, self)
        self.phase = SendPhase.DATA
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        # As smtplib.SMTP.data: CRLF line ends, leading dots doubled, then the terminator.
        if isinstance(msg, str):
            msg = _ANY_LINE_END.sub("\r\n", msg).encode("ascii")
        body = _LEADING_DOT.sub(b"..", bytes(msg))
        if body[-2:] != b"\r\n":
            body += b"\r\n"
        body += b".\r\n"
        self.phase = SendPhase.BODY
        if self.before_body is not None:
            self.before_body()
        # If this raises, the terminator (the last bytes) never left: nothing was delivered.
        smtp.send(body)
        self.phase = SendPhase.REPLY
        sock = smtp.sock
        try:
            if sock is not None:
                sock.settimeout(self.reply_timeout)
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            raise _OutcomeUnknown(f"no reply to the end of DATA: {_describe(exc)}") from None
        finally:
            if sock is not None and smtp.sock is sock:
                sock.settimeout(self.command_timeout)
        if 200 <= code < 300:
            # Any 2xx is acceptance; smtplib would take all but 250 for a refusal (and retry).
            return 250, reply
        if not 400 <= code < 600:
            raise _OutcomeUnknown(
                f"unintelligible reply to the end of DATA: {_reply_text(code, reply)}"
            )
        return code, reply


class _SMTP(_PhasedTransaction, smtplib.SMTP):
    pass


class _SMTPSSL(_PhasedTransaction, smtplib.SMTP_SSL):
    pass


class _Unusable(Exception):
    """The server cannot be used as configured (login refused, certificate not trusted, no
    STARTTLS): retrying is pointless, and so is trying the rest of the batch."""


class SmtpMailer(Mailer):
    """SMTP with optional STARTTLS or implicit TLS; one connection reused for a whole batch.

    Failures are sorted per message: a 5xx reply to the recipient or the message fails only that
    message (``MailError(permanent=True)``); a 4xx reply, a dropped connection or a timeout is
    retried with exponential backoff, then reported as ``MailError(permanent=False)`` so a later
    run can try again. A server that stays unreachable (or refuses our login) fails the rest of
    the batch at once instead of making every remaining subscriber wait out their own retries.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        data_timeout: float = DATA_REPLY_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        rate: float | None = None,
        retry: RetryPolicy | None = None,
        local_hostname: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if implicit_tls and starttls:
            raise ValueError("smtps:// already uses TLS: starttls does not apply")
        if rate is not None and not rate > 0:
            raise ValueError("rate must be greater than 0 messages per second")
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.ssl_context = ssl_context
        self.rate = rate
        self.retry = retry or RetryPolicy()
        self.local_hostname = local_hostname
        self._sleep = sleep
        self._clock = clock
        self._connection: _SMTP | _SMTPSSL | None = None
        self._sent_on_connection = 0
        self._next_send_at = 0.0
        self._unavailable: str | None = None
        self.connections_opened = 0

    @property
    def description(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        options = "?starttls=1" if self.starttls else ""
        return f"{scheme}://{user}{self.host}:{self.port}{options}"

    def __repr__(self) -> str:
        return f"SmtpMailer({self.description})"

    def send(self, message: EmailMessage, *, before_body: BeforeBody | None = None) -> None:
        try:
            self._send(message, before_body)
        except MailError as exc:
            # Server replies are quoted verbatim; make sure none of them echoes our password.
            raise exc.with_message(self._scrub(str(exc))) from None

    def _scrub(self, text: str) -> str:
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text

    def _send(self, message: EmailMessage, before_body: BeforeBody | None) -> None:
        if self._unavailable is not None:
            raise MailError(
                f"not attempted: {self.description} failed earlier in this batch "
                f"({self._unavailable})",
                permanent=False,
                phase=SendPhase.CONNECT,
            )
        attempt = 0
        free_reconnect = True
        while True:
            attempt += 1
            reused = self._connection is not None and self._sent_on_connection > 0
            self._pace()
            try:
                self._attempt(message, before_body)
                return
            except _Unusable as exc:
                self._unavailable = str(exc)
                raise MailError(
                    f"{self.description}: {exc}", permanent=False, phase=SendPhase.CONNECT
                ) from None
            except _Temporary as exc:
                failure = exc
            if failure.connection and reused and free_reconnect:
                # Servers close idle or long-lived connections whenever they like; the first
                # reconnect within one message is routine and costs neither an attempt nor a wait.
                free_reconnect = False
                attempt -= 1
                logger.info(
                    "%s: connection lost (%s), reconnecting",
                    self.description,
                    self._scrub(failure.reason),
                )
                continue
            if attempt >= self.retry.attempts:
                break
            delay = self.retry.delay(attempt)
            logger.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1fs",
                self.description,
                attempt,
                self.retry.attempts,
                self._scrub(failure.reason),
                delay,
            )
            self._sleep(delay)
        if failure.connection:
            self._unavailable = failure.reason
        raise MailError(
            f"{failure.reason} (gave up after {attempt} attempts)",
            permanent=False,
            code=failure.code,
            phase=failure.phase,
        )

    def _pace(self) -> None:
        """Keep at most ``rate`` SMTP transactions per second, evenly spaced (no bursts)."""
        if self.rate is None:
            return
        now = self._clock()
        if now < self._next_send_at:
            self._sleep(self._next_send_at - now)
            now = self._next_send_at
        self._next_send_at = now + 1.0 / self.rate

    def _attempt(self, message: EmailMessage, before_body: BeforeBody | None) -> None:
        if self._connection is None:
            self._connection = self._connect()
            self._sent_on_connection = 0
        connection = self._connection
        connection.before_body = before_body
        try:
            connection.send_message(message)
        except _OutcomeUnknown as exc:
            # The server may have stored it: this connection's state is unknowable, and this
            # message must not go out again. The next message gets a fresh connection.
            self._drop_connection()
            raise MailOutcomeUnknown(f"{self.description}: {exc}", phase=SendPhase.REPLY) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            self._reply_failure("RCPT TO refused", code, reply)
        except smtplib.SMTPSenderRefused as exc:
            if 500 <= exc.smtp_code < 600:
                # Our own envelope sender (or the message size) was refused: not the subscriber's
                # fault, so never permanent for them, and retrying now would only repeat it.
                raise MailError(
                    f"MAIL FROM refused: {_reply_text(exc.smtp_code, exc.smtp_error)}",
                    permanent=False,
                    code=exc.smtp_code,
                    phase=SendPhase.MAIL,
                ) from None
            self._reply_failure("MAIL FROM refused", exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPDataError as exc:
            self._reply_failure("message refused", exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError(
                f"{self.description}: {exc}", permanent=True, phase=connection.phase
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            # Dropped, reset or timed out before the end of DATA: the connection is unusable,
            # and the message was not delivered.
            phase = connection.phase
            self._drop_connection()
            raise _Temporary(_describe(exc), connection=True, phase=phase) from None
        finally:
            connection.before_body = None
        self._sent_on_connection += 1

    def _reply_failure(self, what: str, code: int, reply: bytes | str) -> None:
        text = f"{what}: {_reply_text(code, reply)}"
        phase = self._connection.phase if self._connection is not None else None
        if code == 421 or code < 400:
            # 421 means the server is closing the connection (smtplib has closed it already).
            self._drop_connection()
            raise _Temporary(text, connection=True, code=code, phase=phase)
        if code < 500:
            raise _Temporary(text, connection=False, code=code, phase=phase)
        raise MailError(text, permanent=True, code=code, phase=phase)

    def _tls_context(self) -> ssl.SSLContext:
        # Loading the system's CA store takes milliseconds: do it once per mailer, and only
        # when TLS is used at all.
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def _connect(self) -> _SMTP | _SMTPSSL:
        helo = self.local_hostname or _local_hostname()
        connection: _SMTP | _SMTPSSL
        try:
            # The host goes to the constructor (which connects): smtplib checks the certificate
            # against the host name given there, for implicit TLS and STARTTLS alike.
            if self.implicit_tls:
                connection = _SMTPSSL(
                    self.host,
                    self.port,
                    local_hostname=helo,
                    timeout=self.timeout,
                    context=self._tls_context(),
                )
            else:
                connection = _SMTP(self.host, self.port, local_hostname=helo, timeout=self.timeout)
        except BaseException as exc:
            raise self._connect_failure(exc) from None
        try:
            # SMTP waits for a reply after every command, so Nagle's algorithm only adds delay:
            # over TLS a digest goes out as several records, and the last one would sit in the
            # kernel until the server's delayed ACK (40 ms on Linux), for every message.
            if connection.sock is not None:
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.ehlo_or_helo_if_needed()
            if self.starttls:
                # smtplib raises SMTPNotSupportedError if STARTTLS is not offered: never fall
                # back to plain text when TLS was asked for.
                connection.starttls(context=self._tls_context())
                connection.ehlo()
            if self.username:
                self._warn_if_cleartext()
                connection.login(self.username, self._password or "")
        except BaseException as exc:
            with contextlib.suppress(OSError):
                connection.close()
            raise self._connect_failure(exc) from None
        connection.command_timeout = self.timeout
        connection.reply_timeout = self.data_timeout
        self.connections_opened += 1
        logger.debug("%s: connected", self.description)
        return connection

    def _connect_failure(self, exc: BaseException) -> BaseException:
        """The internal failure a connection error amounts to (never includes the password)."""
        if isinstance(exc, _Temporary):
            return exc
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            text = (
                f"login as {self.username!r} refused: {_reply_text(exc.smtp_code, exc.smtp_error)}"
            )
            if 400 <= exc.smtp_code < 500:
                return _Temporary(text, connection=True, code=exc.smtp_code)
            return _Unusable(text)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return _Unusable(f"TLS certificate not trusted: {exc.verify_message}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return _Unusable(str(exc))
        if isinstance(exc, smtplib.SMTPResponseException):
            return _Temporary(
                f"{self.description}: {_reply_text(exc.smtp_code, exc.smtp_error)}",
                connection=True,
                code=exc.smtp_code,
            )
        if isinstance(exc, (OSError, smtplib.SMTPException)):
            return _Temporary(f"{self.description}: {_describe(exc)}", connection=True)
        return exc

    def _warn_if_cleartext(self) -> None:
        if self.implicit_tls or self.starttls:
            return
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            logger.warning(
                "%s: logging in without TLS; add ?starttls=1 or use smtps://", self.description
            )

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._sent_on_connection = 0
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._sent_on_connection = 0
        # A new batch deserves a new chance at a server that was down for the last one.
        self._unavailable = None
        if connection is None:
            return
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply
    # Multi-line replies arrive joined by newlines; the ledger and logs want one line.
    return " ".join(f"{code} {' '.join(text.split())}".split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, OSError) else text


@cache
def _local_hostname() -> str:
    """The name we greet servers with; looked up once, since getfqdn() may query DNS."""
    return socket.getfqdn() or "localhost"


_SMTP_OPTIONS = frozenset(
    {"starttls", "timeout", "data_timeout", "rate", "retries", "backoff", "helo", "cafile"}
)


def mailer_from_url(url: str, *, password: str | None = None) -> Mailer:
    """The transport for a ``MUSICBUTLER_MAIL_URL``. ``password`` overrides one in the URL.

    Raises ValueError naming the bad part; the message never repeats the URL, which may hold a
    password.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileMailer(Path(unquote(parts.path)))
    if parts.scheme == "console":
        return ConsoleMailer()
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"unsupported mail URL scheme {parts.scheme!r}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _SMTP_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown mail URL option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_SMTP_OPTIONS))})"
        )
    implicit_tls = parts.scheme == "smtps"
    starttls = _flag(options.get("starttls", "0"))
    if implicit_tls and starttls:
        raise ValueError("smtps:// is already TLS: drop ?starttls=1 (or use smtp://)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("mail URL port is not a number between 0 and 65535") from None
    username = unquote(parts.username) if parts.username else None
    password = password or (unquote(parts.password) if parts.password else None)
    if password and not username:
        raise ValueError("an SMTP password is set but the mail URL names no user (user@host)")
    context: ssl.SSLContext | None = None
    if "cafile" in options:
        cafile = Path(options["cafile"])
        if not cafile.is_file():
            raise ValueError(f"mail URL option cafile: {cafile} is not a file")
        try:
            context = ssl.create_default_context(cafile=str(cafile))
        except ssl.SSLError as exc:
            raise ValueError(f"mail URL option cafile: {cafile} is no CA bundle ({exc})") from None
    retries = int(_or(_number(options, "retries", minimum=0), 3))
    return SmtpMailer(
        parts.hostname or "localhost",
        port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=username,
        password=password,
        timeout=_or(_number(options, "timeout", minimum=0, exclusive=True), 30.0),
        data_timeout=_or(
            _number(options, "data_timeout", minimum=0, exclusive=True), DATA_REPLY_TIMEOUT
        ),
        ssl_context=context,
        rate=_number(options, "rate", minimum=0, exclusive=True),
        retry=RetryPolicy(
            attempts=retries + 1, backoff=_or(_number(options, "backoff", minimum=0), 1.0)
        ),
        local_hostname=options.get("helo") or None,
    )


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"mail URL option starttls={value!r}: use 1 or 0")


def _number(
    options: dict[str, str], name: str, *, minimum: float, exclusive: bool = False
) -> float | None:
    """The option as a finite number within bounds, or None when the URL does not set it."""
    if name not in options:
        return None
    raw = options[name]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"mail URL option {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
        bound = "greater than" if exclusive else "at least"
        raise ValueError(f"mail URL option {name}={raw!r} must be {bound} {minimum:g}")
    return value


def _or(value: float | None, default: float) -> float:
    return default if value is None else value

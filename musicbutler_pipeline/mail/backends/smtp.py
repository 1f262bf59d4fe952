"""``smtp://`` and ``smtps://``: delivery to a server, one connection reused for a whole batch.

Everything up to the end of DATA is safe to retry. Once the terminating ``CRLF.CRLF`` has been
written the server may have stored the message, so a lost or late final reply raises
``MailOutcomeUnknown``, which is never retried: only an operator can tell whether it arrived.

The password never appears in a description, a repr, a log line or an error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, cast

from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.domain.sends import SendPhase
from musicbutler_pipeline.mail.backends.base import (
    BeforeBody,
    Mailer,
    MailError,
    MailOutcomeUnknown,
    Message,
    OutgoingMessage,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

logger = logging.getLogger(__name__)

# RFC 5321 4.5.3.2.6: a client should wait 10 minutes for the reply to the end of DATA, because
# the server may be filtering or relaying the message before it answers.
DATA_REPLY_TIMEOUT = 600.0

_ANY_LINE_END = re.compile(r"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


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
        phase: SendPhase | None = SendPhase.CONNECT,
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

    phase: SendPhase = SendPhase.CONNECT
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


class Pacer:
    """At most ``rate`` SMTP transactions per second, evenly spaced (no bursts), shared by every
    connection of a mailer: ``?rate=`` is the relay's limit for the whole run, not per connection.
    """

    def __init__(
        self,
        rate: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be greater than 0 messages per second")
        self.rate = rate
        self._sleep = sleep
        self._clock = clock
        self._next_at = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Wait for this caller's slot; callers get consecutive slots 1/rate apart."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_at)
            self._next_at = slot + 1.0 / self.rate
        if slot > now:
            self._sleep(slot - now)


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
        pacer: Pacer | None = None,
    ) -> None:
        if implicit_tls and starttls:
            raise ValueError("smtps:// already uses TLS: starttls does not apply")
        if rate is not None and not rate > 0:
            raise ValueError("rate must be greater than 0 messages per second")
        if pacer is None and rate is not None:
            pacer = Pacer(rate, sleep=sleep, clock=clock)
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
        self._pacer = pacer
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

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        try:
            self._send(message, before_body)
        except MailError as exc:
            # Server replies are quoted verbatim; make sure none of them echoes our password.
            raise exc.with_message(self._scrub(str(exc))) from None

    def _scrub(self, text: str) -> str:
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text

    def _send(self, message: Message, before_body: BeforeBody | None) -> None:
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
        if self._pacer is not None:
            self._pacer.wait()

    def _attempt(self, message: Message, before_body: BeforeBody | None) -> None:
        if self._connection is None:
            self._connection = self._connect()
            self._sent_on_connection = 0
        connection = self._connection
        connection.before_body = before_body
        try:
            if isinstance(message, OutgoingMessage):
                # Built once, sent as it is: no parsing or flattening by the email package.
                connection.sendmail(message.envelope_from, list(message.recipients), message.data)
            else:
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


class SmtpPool(Mailer):
    """``?connections=N``: N connections to the same server, used from N threads at once, under
    one shared ``?rate=`` (as mailing-list servers do: concurrency x rate, up to the relay's
    limit). Each connection is a ``SmtpMailer`` with its own retries and exactly-once rules
    (``before_body``, ``MailOutcomeUnknown``); a message goes out on whichever is idle.
    """

    def __init__(self, members: Sequence[SmtpMailer]) -> None:
        if not members:
            raise ValueError("an SMTP pool needs at least one connection")
        self._members = list(members)
        self._idle: queue.SimpleQueue[SmtpMailer] = queue.SimpleQueue()
        for member in self._members:
            self._idle.put(member)

    @property
    def connections(self) -> int:
        return len(self._members)

    @property
    def connections_opened(self) -> int:
        return sum(member.connections_opened for member in self._members)

    @property
    def description(self) -> str:
        return f"{self._members[0].description} x{len(self._members)} connections"

    def __repr__(self) -> str:
        return f"SmtpPool({self.description})"

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        member = self._idle.get()
        try:
            # A server one connection found unreachable fails the others' messages at once too,
            # instead of each connection waiting out its own retries.
            down = next((m for m in self._members if m._unavailable is not None), member)
            down.send(message, before_body=before_body)
        finally:
            self._idle.put(member)

    def close(self) -> None:
        for member in self._members:
            member.close()


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

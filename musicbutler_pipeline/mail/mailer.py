"""Mail transports chosen by URL scheme, like Django's mail backends.

``smtp://`` / ``smtps://`` deliver to a server, ``file:///dir`` writes one ``.eml`` per message,
``console://`` writes messages to a stream, and ``RecordingMailer`` keeps them in memory for tests.
Every transport connects lazily (on the first send) and is a context manager for one batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import smtplib
import ssl
import sys
import tempfile
from abc import ABC, abstractmethod
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)


class MailError(Exception):
    """A message was not accepted. ``permanent`` failures must not be retried."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Mailer(ABC):
    """Sends one message at a time; may hold a connection open between sends."""

    @abstractmethod
    def send(self, message: EmailMessage) -> None:
        """Hand the message over for delivery, or raise MailError."""

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

    def send(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        self.directory.mkdir(parents=True, exist_ok=True)
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

    def send(self, message: EmailMessage) -> None:
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

    def send(self, message: EmailMessage) -> None:
        for address, error in self.fail_for.items():
            if address in str(message["To"]):
                raise error
        self.messages.append(message)


class SmtpMailer(Mailer):
    """SMTP with optional STARTTLS or implicit TLS; one connection reused for a batch."""

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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None

    @property
    def description(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        connection: smtplib.SMTP
        if self.implicit_tls:
            connection = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                connection.starttls(context=context)
        if self.username:
            connection.login(self.username, self._password or "")
        return connection

    def send(self, message: EmailMessage) -> None:
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._connect()
                self._connection.send_message(message)
                return
            except smtplib.SMTPServerDisconnected as exc:
                # A server may close an idle connection between two sends: reconnect once.
                self._connection = None
                if attempt == 2:
                    raise MailError(
                        f"{self.description}: disconnected: {exc}", permanent=False
                    ) from exc
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _reply_error(code, reply) from exc
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                raise _reply_error(exc.smtp_code, exc.smtp_error) from exc
            except smtplib.SMTPAuthenticationError as exc:
                raise MailError(
                    f"{self.description}: login refused ({exc.smtp_code})", permanent=False
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop_connection()
                raise MailError(f"{self.description}: {exc}", permanent=False) from exc

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()


def _reply_error(code: int, reply: bytes | str) -> MailError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return MailError(f"{code} {text}", permanent=500 <= code < 600)


def mailer_from_url(url: str, *, password: str | None = None) -> Mailer:
    """The transport for a ``MUSICBUTLER_MAIL_URL``. ``password`` overrides one in the URL."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileMailer(Path(unquote(parts.path)))
    if parts.scheme == "console":
        return ConsoleMailer()
    if parts.scheme in ("smtp", "smtps"):
        query = parse_qs(parts.query)
        implicit_tls = parts.scheme == "smtps"
        return SmtpMailer(
            parts.hostname or "localhost",
            parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            starttls=query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=password or (unquote(parts.password) if parts.password else None),
            timeout=float(query.get("timeout", ["30"])[0]),
        )
    raise ValueError(f"unsupported mail URL scheme {parts.scheme!r}")

"""``MUSICBUTLER_MAIL_URL`` -> a mail backend, chosen by URL scheme like Django's mail backends.

``smtp://`` / ``smtps://`` deliver to a server (``backends.smtp``), ``file:///dir`` writes one
``.eml`` per message (``backends.file``), ``console://`` writes messages to a stream
(``backends.console``). The SMTP URL (see docs/email.md)::

    smtp://[user[:password]@]host[:port][?starttls=1&timeout=30&data_timeout=600&rate=10&retries=3&backoff=1&connections=1]
    smtps://[user[:password]@]host[:port][?...]

``parse_mail_url`` checks a URL and its options without building anything that sends (settings
uses it to refuse a bad URL when a run starts); ``mailer_from_url`` builds the backend.
``MUSICBUTLER_SMTP_PASSWORD`` overrides a password in the URL; neither ever appears in a
description, a repr, a log line or an error message.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.mail.backends.base import Mailer
from musicbutler_pipeline.mail.backends.console import ConsoleMailer
from musicbutler_pipeline.mail.backends.file import FileMailer
from musicbutler_pipeline.mail.backends.smtp import DATA_REPLY_TIMEOUT, Pacer, SmtpMailer, SmtpPool

_SMTP_OPTIONS = frozenset(
    {
        "starttls",
        "timeout",
        "data_timeout",
        "rate",
        "retries",
        "backoff",
        "helo",
        "cafile",
        "connections",
    }
)
_DEFAULT_RETRY = RetryPolicy()
# More connections than this is no longer politeness towards one relay.
MAX_CONNECTIONS = 32


@dataclass(frozen=True, slots=True)
class MailUrl:
    """A checked mail URL. ``scheme`` is ``file``, ``console``, ``smtp`` or ``smtps``; the SMTP
    fields keep their defaults for the other schemes, and ``directory`` is set for ``file`` only."""

    scheme: str
    directory: Path | None = None
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    data_timeout: float = DATA_REPLY_TIMEOUT
    rate: float | None = None
    retry: RetryPolicy = _DEFAULT_RETRY
    helo: str | None = None
    cafile: Path | None = None
    connections: int = 1  # parallel connections, all under the one ``rate``

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"


def parse_mail_url(url: str, *, password: str | None = None) -> MailUrl:
    """Check a ``MUSICBUTLER_MAIL_URL``; ``password`` overrides one in the URL.

    Raises ValueError naming the bad part; the message never repeats the URL, which may hold a
    password.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return MailUrl("file", directory=Path(unquote(parts.path)))
    if parts.scheme == "console":
        return MailUrl("console")
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
    cafile: Path | None = None
    if "cafile" in options:
        cafile = Path(options["cafile"])
        _tls_context(cafile)  # refuse a missing or unreadable bundle now
    retries = int(_or(_number(options, "retries", minimum=0), 3))
    connections = options.get("connections", "1")
    if not connections.isdigit() or not 1 <= int(connections) <= MAX_CONNECTIONS:
        raise ValueError(
            f"mail URL option connections={connections!r} must be a whole number "
            f"from 1 to {MAX_CONNECTIONS}"
        )
    return MailUrl(
        parts.scheme,
        host=parts.hostname or "localhost",
        port=port or (465 if implicit_tls else 25),
        starttls=starttls,
        username=username,
        password=password,
        timeout=_or(_number(options, "timeout", minimum=0, exclusive=True), 30.0),
        data_timeout=_or(
            _number(options, "data_timeout", minimum=0, exclusive=True), DATA_REPLY_TIMEOUT
        ),
        rate=_number(options, "rate", minimum=0, exclusive=True),
        retry=RetryPolicy(
            attempts=retries + 1,
            # Every wait is capped at max_backoff: a longer first wait is the cap itself.
            backoff=min(
                _or(_number(options, "backoff", minimum=0), 1.0), _DEFAULT_RETRY.max_backoff
            ),
        ),
        helo=options.get("helo") or None,
        cafile=cafile,
        connections=int(connections),
    )


def mailer_from_url(url: str, *, password: str | None = None) -> Mailer:
    """The backend for a ``MUSICBUTLER_MAIL_URL`` (see ``parse_mail_url``); nothing connects
    until its first send."""
    mail_url = parse_mail_url(url, password=password)
    if mail_url.directory is not None:
        return FileMailer(mail_url.directory)
    if mail_url.scheme == "console":
        return ConsoleMailer()
    # One pacer for all connections: ``rate`` is the relay's limit, not each connection's.
    pacer = Pacer(mail_url.rate) if mail_url.rate is not None else None
    members = [_smtp_mailer(mail_url, pacer) for _ in range(mail_url.connections)]
    return members[0] if len(members) == 1 else SmtpPool(members)


def _smtp_mailer(mail_url: MailUrl, pacer: Pacer | None) -> SmtpMailer:
    return SmtpMailer(
        mail_url.host,
        mail_url.port,
        implicit_tls=mail_url.implicit_tls,
        starttls=mail_url.starttls,
        username=mail_url.username,
        password=mail_url.password,
        timeout=mail_url.timeout,
        data_timeout=mail_url.data_timeout,
        ssl_context=_tls_context(mail_url.cafile) if mail_url.cafile is not None else None,
        rate=mail_url.rate,
        retry=mail_url.retry,
        local_hostname=mail_url.helo,
        pacer=pacer,
    )


def _tls_context(cafile: Path) -> ssl.SSLContext:
    if not cafile.is_file():
        raise ValueError(f"mail URL option cafile: {cafile} is not a file")
    try:
        return ssl.create_default_context(cafile=str(cafile))
    except ssl.SSLError as exc:
        raise ValueError(f"mail URL option cafile: {cafile} is no CA bundle ({exc})") from None


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

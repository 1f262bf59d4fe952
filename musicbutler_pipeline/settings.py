"""Environment variables -> validated settings, with one clear error line per bad variable.

Nothing here runs at import time: callers ask for ``Settings.from_env()`` when a run or command
starts, so definitions load (and the UI starts) even when a setting is wrong, and the run that
needs it stops with a message naming the variable.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MAIL_SCHEMES = ("smtp", "smtps", "file", "console")


class SettingsError(ValueError):
    """A configuration variable is malformed. The message names it and says what is wrong."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    home: Path
    warehouse_url: str
    mail_url: str = field(repr=False)  # may carry an SMTP password
    mail_from: str
    base_url: str
    musicbrainz_url: str
    musicbrainz_rate: float
    contact: str | None
    listenbrainz_url: str
    dagster_home: Path
    operator_email: str | None
    # Days after its partition within which a digest is still worth sending (retries stop then).
    max_send_age_days: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        home = Path(get("MUSICBUTLER_HOME") or ".musicbutler").expanduser().absolute()
        warehouse_url = get("MUSICBUTLER_WAREHOUSE_URL") or f"sqlite:///{home / 'warehouse.db'}"
        _check_sqlalchemy_url("MUSICBUTLER_WAREHOUSE_URL", warehouse_url)
        mail_url = get("MUSICBUTLER_MAIL_URL") or (home / "outbox").as_uri()
        _check_url("MUSICBUTLER_MAIL_URL", mail_url, MAIL_SCHEMES)
        _check_mail_options(mail_url)
        mail_from = get("MUSICBUTLER_MAIL_FROM") or "MusicButler <butler@localhost>"
        if "@" not in parseaddr(mail_from)[1]:
            raise SettingsError("MUSICBUTLER_MAIL_FROM", f"{mail_from!r} has no e-mail address")
        base_url = get("MUSICBUTLER_BASE_URL") or "http://localhost:8000"
        _check_url("MUSICBUTLER_BASE_URL", base_url, ("http", "https"))
        musicbrainz_url = get("MUSICBUTLER_MUSICBRAINZ_URL") or "https://musicbrainz.org/ws/2"
        _check_url("MUSICBUTLER_MUSICBRAINZ_URL", musicbrainz_url, ("http", "https", "file"))
        rate = _positive_float("MUSICBUTLER_MUSICBRAINZ_RATE", get("MUSICBUTLER_MUSICBRAINZ_RATE"))
        listenbrainz_url = get("MUSICBUTLER_LISTENBRAINZ_URL") or "https://api.listenbrainz.org/1"
        _check_url("MUSICBUTLER_LISTENBRAINZ_URL", listenbrainz_url, ("http", "https"))
        dagster_home = Path(get("DAGSTER_HOME") or home / "dagster").expanduser().absolute()
        operator_email = get("MUSICBUTLER_OPERATOR_EMAIL")
        if operator_email and "@" not in operator_email:
            raise SettingsError("MUSICBUTLER_OPERATOR_EMAIL", f"{operator_email!r} is no address")
        max_send_age_days = _max_send_age_days(get("MUSICBUTLER_MAX_SEND_AGE_DAYS"))
        return cls(
            home=home,
            warehouse_url=warehouse_url,
            mail_url=mail_url,
            mail_from=mail_from,
            base_url=base_url.rstrip("/"),
            musicbrainz_url=musicbrainz_url.rstrip("/"),
            musicbrainz_rate=rate,
            contact=get("MUSICBUTLER_CONTACT"),
            listenbrainz_url=listenbrainz_url.rstrip("/"),
            dagster_home=dagster_home,
            operator_email=operator_email,
            max_send_age_days=max_send_age_days,
        )

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def smtp_password(env: Mapping[str, str] | None = None) -> str | None:
    """The SMTP password from ``MUSICBUTLER_SMTP_PASSWORD``; kept out of Settings so it is never
    part of a repr, a log line or run config."""
    env = os.environ if env is None else env
    return env.get("MUSICBUTLER_SMTP_PASSWORD") or None


def secret_key(home: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The signing key for unsubscribe links.

    ``MUSICBUTLER_SECRET_KEY`` in production. For local use a random key is created once in
    ``$MUSICBUTLER_HOME/secret_key`` (mode 0600), so links keep working across runs.
    """
    env = os.environ if env is None else env
    configured = env.get("MUSICBUTLER_SECRET_KEY", "")
    if configured:
        if len(configured) < 16:
            raise SettingsError("MUSICBUTLER_SECRET_KEY", "must be at least 16 characters long")
        return configured.encode()
    key_file = home / "secret_key"
    if not key_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return key_file.read_text().strip().encode()


def _check_url(variable: str, value: str, schemes: tuple[str, ...]) -> None:
    scheme = urlsplit(value).scheme
    if not scheme or "://" not in value:
        raise SettingsError(variable, f"{value!r} is not a URL (it has no scheme://)")
    if scheme not in schemes:
        raise SettingsError(
            variable, f"scheme {scheme!r} is not supported (use one of: {', '.join(schemes)})"
        )


def _check_mail_options(mail_url: str) -> None:
    """Options such as ``?rate=0`` are refused now, not when the first run opens the mailer."""
    from musicbutler_pipeline.mail.mailer import mailer_from_url

    try:
        mailer_from_url(mail_url)  # builds the transport only; nothing connects
    except ValueError as exc:  # its message never repeats the URL (it may hold a password)
        raise SettingsError("MUSICBUTLER_MAIL_URL", str(exc)) from None


def _check_sqlalchemy_url(variable: str, value: str) -> None:
    if "://" not in value:
        raise SettingsError(variable, f"{value!r} is not a URL (it has no scheme://)")
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise SettingsError(variable, f"not a database URL ({exc})") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(variable, f"{url.get_backend_name()!r} is not supported")


def _positive_float(variable: str, value: str | None, default: float = 1.0) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise SettingsError(variable, f"must be greater than 0, got {value!r}")
    return number


def _max_send_age_days(value: str | None, default: int = 2) -> int:
    if value is None:
        return default
    try:
        days = int(value)
    except ValueError:
        raise SettingsError(
            "MUSICBUTLER_MAX_SEND_AGE_DAYS", f"{value!r} is not a whole number of days"
        ) from None
    if not 0 <= days <= 3650:
        raise SettingsError(
            "MUSICBUTLER_MAX_SEND_AGE_DAYS", f"must be between 0 and 3650 days, got {value!r}"
        )
    return days

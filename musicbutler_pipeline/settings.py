"""Environment variables -> validated settings, with one clear error line per bad variable.

Nothing here runs at import time: callers ask for ``Settings.from_env()`` when a run or command
starts, so definitions load (and the UI starts) even when a setting is wrong, and the run that
needs it stops with a message naming the variable.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from musicbutler_pipeline.domain.sends import OWED_WINDOW
from musicbutler_pipeline.domain.shards import MAX_SEND_SHARDS
from musicbutler_pipeline.mail.url import parse_mail_url

MAIL_SCHEMES = ("smtp", "smtps", "file", "console")
# HMAC-SHA256 keys shorter than this are guessable; 16 characters is the documented floor.
MIN_SECRET_KEY_LENGTH = 16
# MUSICBUTLER_LISTENBRAINZ_URL=off: no ListenBrainz calls (offline, or libraries by CSV only).
LISTENBRAINZ_OFF = "off"
_HIDDEN = "***"
_BAD_PORT = "the port is not a number between 1 and 65535"
# Query options whose values are secrets in some driver's URL (libpq's ?password=, for one).
_SECRET_OPTION_WORDS = ("pass", "secret", "token", "key", "auth")


class SettingsError(ValueError):
    """A configuration variable is malformed. The message names it and says what is wrong."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class NotConfigured(Exception):
    """Settings a run needs are missing or unusable: it is refused before it starts."""

    def __init__(self, problems: list[SettingsError]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


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
    listenbrainz_url: str | None  # None: off, libraries come from CSV imports only
    dagster_home: Path
    operator_email: str | None
    # Days after its partition within which a digest is still worth sending (retries stop then).
    max_send_age_days: int = 2
    # Hours after its partition's end by which a day's owed emails must all be sent, or the
    # operator is e-mailed (sensors/deadlines.py).
    send_deadline_hours: int = 6
    # The retry sensor's wait after a day's first failed attempt, doubling up to the maximum.
    retry_backoff_seconds: int = 300
    retry_max_backoff_seconds: int = 3600
    # The sender's postal address in every digest's footer (bulk-mail rules ask for one).
    postal_address: str | None = None
    # Days of drops and of source pages kept before today's partition; older ones are pruned
    # (warehouse/retention.py). Sends and announcements are never pruned.
    keep_drops_days: int = 90
    keep_source_pages_days: int = 30
    # How the day's digests are sent: by how many shards, on which executor (executor.py).
    execution: ExecutionSettings = field(default_factory=lambda: ExecutionSettings())

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
        if listenbrainz_url.lower() == LISTENBRAINZ_OFF:
            listenbrainz_url = None
        else:
            _check_url("MUSICBUTLER_LISTENBRAINZ_URL", listenbrainz_url, ("http", "https"))
        dagster_home = Path(get("DAGSTER_HOME") or home / "dagster").expanduser().absolute()
        operator_email = get("MUSICBUTLER_OPERATOR_EMAIL")
        if operator_email and "@" not in operator_email:
            raise SettingsError("MUSICBUTLER_OPERATOR_EMAIL", f"{operator_email!r} is no address")
        max_send_age_days = _max_send_age_days(get("MUSICBUTLER_MAX_SEND_AGE_DAYS"))
        send_deadline_hours = _whole_number(
            "MUSICBUTLER_SEND_DEADLINE_HOURS", get("MUSICBUTLER_SEND_DEADLINE_HOURS"), 6, 0, 720
        )
        backoff = _whole_number(
            "MUSICBUTLER_RETRY_BACKOFF_SECONDS", get("MUSICBUTLER_RETRY_BACKOFF_SECONDS"), 300, 1
        )
        max_backoff = _whole_number(
            "MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS",
            get("MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS"),
            max(3600, backoff),
            backoff,
        )
        postal_address = _postal_address(get("MUSICBUTLER_POSTAL_ADDRESS"))
        keep_drops_days = _keep_drops_days(get("MUSICBUTLER_KEEP_DROPS_DAYS"), max_send_age_days)
        keep_source_pages_days = _whole_number(
            "MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS", get("MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS"), 30, 0
        )
        execution = ExecutionSettings.from_env(env)
        return cls(
            execution=execution,
            home=home,
            warehouse_url=warehouse_url,
            mail_url=mail_url,
            mail_from=mail_from,
            base_url=base_url.rstrip("/"),
            musicbrainz_url=musicbrainz_url.rstrip("/"),
            musicbrainz_rate=rate,
            contact=get("MUSICBUTLER_CONTACT"),
            listenbrainz_url=listenbrainz_url.rstrip("/") if listenbrainz_url else None,
            dagster_home=dagster_home,
            operator_email=operator_email,
            max_send_age_days=max_send_age_days,
            send_deadline_hours=send_deadline_hours,
            retry_backoff_seconds=backoff,
            retry_max_backoff_seconds=max_backoff,
            postal_address=postal_address,
            keep_drops_days=keep_drops_days,
            keep_source_pages_days=keep_source_pages_days,
        )

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


EXECUTORS = ("multiprocess", "in_process", "celery")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss")


@dataclass(frozen=True)
class ExecutionSettings:
    """``MUSICBUTLER_SEND_SHARDS``, ``MUSICBUTLER_EXECUTOR`` and the Celery broker: how the day's
    digests are spread over processes and machines. Read when definitions load (the job's
    executor and the notification asset's shape are part of the definitions), and validated
    again at run start with the other settings, so a malformed one stops the run with its line.
    """

    send_shards: int = 1
    executor: str = "multiprocess"
    celery_broker: str | None = field(default=None, repr=False)  # may carry a password
    celery_backend: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExecutionSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        send_shards = _whole_number(
            "MUSICBUTLER_SEND_SHARDS", get("MUSICBUTLER_SEND_SHARDS"), 1, 1, MAX_SEND_SHARDS
        )
        executor = (get("MUSICBUTLER_EXECUTOR") or "multiprocess").lower().replace("-", "_")
        if executor not in EXECUTORS:
            raise SettingsError(
                "MUSICBUTLER_EXECUTOR", f"{executor!r} is not one of {', '.join(EXECUTORS)}"
            )
        broker = get("MUSICBUTLER_CELERY_BROKER")
        backend = get("MUSICBUTLER_CELERY_BACKEND")
        if executor == "celery" and broker is None:
            raise SettingsError(
                "MUSICBUTLER_CELERY_BROKER",
                "MUSICBUTLER_EXECUTOR=celery needs a broker URL (amqp://... or redis://...)",
            )
        if broker is not None:
            _check_url("MUSICBUTLER_CELERY_BROKER", broker, BROKER_SCHEMES)
        if backend is not None:
            _check_url("MUSICBUTLER_CELERY_BACKEND", backend, (*BROKER_SCHEMES, "rpc"))
        return cls(
            send_shards=send_shards,
            executor=executor,
            celery_broker=broker,
            celery_backend=backend,
        )


def smtp_password(env: Mapping[str, str] | None = None) -> str | None:
    """The SMTP password from ``MUSICBUTLER_SMTP_PASSWORD``; kept out of Settings so it is never
    part of a repr, a log line or run config."""
    env = os.environ if env is None else env
    return env.get("MUSICBUTLER_SMTP_PASSWORD") or None


def secret_key(home: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The signing key for unsubscribe links.

    ``MUSICBUTLER_SECRET_KEY`` in production. For local use a random key is created once in
    ``$MUSICBUTLER_HOME/secret_key`` (mode 0600), so links keep working across runs. A key
    shorter than ``MIN_SECRET_KEY_LENGTH`` is refused wherever it comes from: an empty key would
    let anyone forge unsubscribe links.
    """
    env = os.environ if env is None else env
    configured = env.get("MUSICBUTLER_SECRET_KEY", "")
    if configured.strip():
        # Used as given (not stripped): the key signs links already sent.
        if len(configured.strip()) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                "MUSICBUTLER_SECRET_KEY",
                f"must be at least {MIN_SECRET_KEY_LENGTH} characters long",
            )
        return configured.encode()
    key_file = home / "secret_key"
    try:
        stored = key_file.read_bytes()
    except FileNotFoundError:
        stored = _create_key_file(key_file)
    key = stored.strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise SettingsError(
            str(key_file),
            f"holds a key of {len(key)} characters, at least {MIN_SECRET_KEY_LENGTH} are "
            "needed: delete the file to have a new key made (links already sent stop working) "
            "or set MUSICBUTLER_SECRET_KEY",
        )
    return key


def secret_key_problem(home: Path, env: Mapping[str, str] | None = None) -> SettingsError | None:
    """Why the signing key ``secret_key`` would return is unusable, if it is; never creates the
    key file (a missing one is made by the first send)."""
    env = os.environ if env is None else env
    if not env.get("MUSICBUTLER_SECRET_KEY", "").strip() and not (home / "secret_key").exists():
        return None
    try:
        secret_key(home, env)  # reads the variable or the existing file; creates nothing
    except SettingsError as exc:
        return exc
    return None


def _create_key_file(key_file: Path) -> bytes:
    """Write a new random key to ``key_file`` unless another process got there first; either
    way return the key that is now in the file.

    The key is written whole to a private temporary file which is then hard-linked into place:
    the link fails if the file exists, so concurrent first starts agree on one key, and nobody
    ever reads a half-written (or empty) file.
    """
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=".secret_key.")
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp creates it with mode 0600
            handle.write(secrets.token_urlsafe(32).encode())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, key_file)
    finally:
        os.unlink(temporary)
    return key_file.read_bytes()


def display_url(value: str) -> str:
    """``value`` as it may be shown in a message, a log line or ``doctor``: any password replaced
    by ``***``. A value that does not parse as ``scheme://…`` is never echoed, because where its
    password starts cannot be told."""
    unshown = "(value not shown: not a well-formed URL)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return unshown
    if not parts.scheme or not value.startswith(f"{parts.scheme}://"):
        return unshown
    # An "@" after the host means a password with a "/", "?" or "#" in it split the URL.
    if "@" in parts.path + parts.query + parts.fragment:
        return unshown
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if parts.username is not None:
        user = parts.username + (f":{_HIDDEN}" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    query = urlencode(
        [
            (name, _HIDDEN if any(word in name.lower() for word in _SECRET_OPTION_WORDS) else v)
            for name, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="/:*",
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _check_url(variable: str, value: str, schemes: tuple[str, ...]) -> None:
    # The value is not repeated in these messages: a malformed URL may hold a password.
    scheme = urlsplit(value).scheme
    if not scheme or not value.startswith(f"{scheme}://"):
        raise SettingsError(variable, "not a URL (it has no scheme://)")
    if scheme not in schemes:
        raise SettingsError(
            variable, f"scheme {scheme!r} is not supported (use one of: {', '.join(schemes)})"
        )


def _check_mail_options(mail_url: str) -> None:
    """Options such as ``?rate=0`` are refused now, not when the first run opens the mailer."""
    try:
        parse_mail_url(mail_url)  # checks the URL only; builds no mailer
    except ValueError as exc:  # its message never repeats the URL (it may hold a password)
        raise SettingsError("MUSICBUTLER_MAIL_URL", str(exc)) from None


def _check_sqlalchemy_url(variable: str, value: str) -> None:
    # Neither the value nor SQLAlchemy's message (which quotes it) is repeated: it may hold a
    # password.
    if "://" not in value:
        raise SettingsError(variable, "not a URL (it has no scheme://)")
    try:
        urlsplit(value).port  # noqa: B018 - raises on a port that is not a number or too big
    except ValueError:
        raise SettingsError(variable, _BAD_PORT) from None
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise SettingsError(
            variable, "not a database URL (expected dialect://user:password@host:port/database)"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(variable, f"{url.get_backend_name()!r} is not supported")
    try:
        url.get_dialect()
    except ArgumentError:
        raise SettingsError(
            variable, f"not a database URL: no SQLAlchemy driver {url.drivername!r}"
        ) from None
    if url.port is not None and not 0 < url.port < 65536:
        raise SettingsError(variable, _BAD_PORT)


# A footer line, not a letter: long enough for any real address, short enough to stay one line.
MAX_POSTAL_ADDRESS = 200


def _postal_address(value: str | None) -> str | None:
    """One line of printable text (``12 Example Street, 10115 Berlin, Germany``), or None."""
    if value is None:
        return None
    if not value.isprintable():
        raise SettingsError(
            "MUSICBUTLER_POSTAL_ADDRESS",
            "must be one line without control characters (separate its parts with commas)",
        )
    if len(value) > MAX_POSTAL_ADDRESS:
        raise SettingsError(
            "MUSICBUTLER_POSTAL_ADDRESS",
            f"is {len(value)} characters long, at most {MAX_POSTAL_ADDRESS} fit a footer line",
        )
    return value


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


def _keep_drops_days(value: str | None, max_send_age_days: int) -> int:
    """Drops must outlive every day that may still be sent, retried or checked: the retry and
    deadline sensors read them up to MUSICBUTLER_MAX_SEND_AGE_DAYS (+1) back, doctor a week."""
    floor = max(max_send_age_days, OWED_WINDOW.days)
    days = _whole_number("MUSICBUTLER_KEEP_DROPS_DAYS", value, max(90, floor + 1), 0)
    if days <= floor:
        raise SettingsError(
            "MUSICBUTLER_KEEP_DROPS_DAYS",
            f"must be more than {floor} days (drops are read while a day may still be sent: "
            f"MUSICBUTLER_MAX_SEND_AGE_DAYS={max_send_age_days}, doctor looks back "
            f"{OWED_WINDOW.days} days), got {value!r}",
        )
    return days


def _whole_number(
    variable: str, value: str | None, default: int, minimum: int, maximum: int = 86400
) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a whole number") from None
    if not minimum <= number <= maximum:
        raise SettingsError(variable, f"must be between {minimum} and {maximum}, got {value!r}")
    return number

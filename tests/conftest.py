"""Shared fixtures: warehouses on SQLite and PostgreSQL, and a clean environment per test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import upgrade

pytest_plugins = ["tests.fixtures.postgres"]

SETTINGS_VARIABLES = (
    "MUSICBUTLER_HOME",
    "MUSICBUTLER_WAREHOUSE_URL",
    "MUSICBUTLER_MAIL_URL",
    "MUSICBUTLER_MAIL_FROM",
    "MUSICBUTLER_BASE_URL",
    "MUSICBUTLER_MUSICBRAINZ_URL",
    "MUSICBUTLER_MUSICBRAINZ_RATE",
    "MUSICBUTLER_CONTACT",
    "MUSICBUTLER_LISTENBRAINZ_URL",
    "MUSICBUTLER_SECRET_KEY",
    "MUSICBUTLER_SMTP_PASSWORD",
    "MUSICBUTLER_OPERATOR_EMAIL",
    "MUSICBUTLER_MAX_SEND_AGE_DAYS",
    "MUSICBUTLER_SEND_DEADLINE_HOURS",
    "MUSICBUTLER_RETRY_BACKOFF_SECONDS",
    "MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS",
    "MUSICBUTLER_KEEP_DROPS_DAYS",
    "MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS",
    "MUSICBUTLER_POSTAL_ADDRESS",
    "DAGSTER_HOME",
)


# Every process a test starts inherits this (the tests strip only MUSICBUTLER_ and DAGSTER_
# variables from the environments they build), so one left running afterwards can be found.
SESSION_MARK = "TESTS_OF_MUSICBUTLER_SESSION"


def _processes_of_this_session(mark: str, base: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = "\nState:\tZ" in (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if not zombie and (mark.encode() in environ or cwd.startswith(base)):
            found[int(entry.name)] = command[:160]
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session when a server, daemon or code server a test started is still running
    after the last test (once the 20 s a code server takes to notice its daemon is gone)."""
    mark = f"{SESSION_MARK}={uuid.uuid4()}"
    os.environ[SESSION_MARK] = mark.split("=", 1)[1]
    base = str(tmp_path_factory.getbasetemp())
    yield
    if not Path("/proc/self/environ").exists():
        return
    deadline = time.monotonic() + 45
    while (left := _processes_of_this_session(mark, base)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(
            "processes started by the tests outlived them (killed now): "
            + "; ".join(f"{pid} {command}" for pid, command in sorted(left.items()))
        )


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MUSICBUTLER_HOME and none of the developer's settings."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "musicbutler-home"
    monkeypatch.setenv("MUSICBUTLER_HOME", str(home))
    monkeypatch.setenv("MUSICBUTLER_SECRET_KEY", "test-secret-key-0123456789")
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """The same test on the embedded default and on the production database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    """A migrated warehouse on each dialect."""
    engine = make_engine(warehouse_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()

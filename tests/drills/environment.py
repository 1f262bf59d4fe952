"""A production-shaped installation in a temporary folder: PostgreSQL warehouse and Dagster
instance (deploy/dagster.yaml), the bundled sample day imported, mail to a loopback sink."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from musicbutler_pipeline.assets.notifications import NOTIFICATION_POOL
from musicbutler_pipeline.assets.releases import MUSICBRAINZ_POOL
from musicbutler_pipeline.demo import SAMPLE_DIR
from musicbutler_pipeline.domain.sends import SendRow
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.migrate import upgrade
from tests.fixtures.loopback import LoopbackServer, Reply

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-23"
# The production setup steps (docs/operations.md): pools get their limit before runs start.
POOLS = (NOTIFICATION_POOL, MUSICBRAINZ_POOL)


@dataclass
class Drill:
    root: Path
    warehouse_url: str
    instance_url: str
    mail_url: str
    engine: Engine
    listenbrainz_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))
        }
        env.update(
            MUSICBUTLER_HOME=str(self.root / "home"),
            MUSICBUTLER_WAREHOUSE_URL=self.warehouse_url,
            MUSICBUTLER_MAIL_URL=self.mail_url,
            MUSICBUTLER_MAIL_FROM="MusicButler <butler@example.org>",
            MUSICBUTLER_MUSICBRAINZ_URL=bundled_snapshot_root().as_uri(),
            MUSICBUTLER_SECRET_KEY="drill-secret-key-0123456789",
            MUSICBUTLER_DAGSTER_POSTGRES_URL=self.instance_url,
            MUSICBUTLER_LISTENBRAINZ_URL=self.listenbrainz_url,
            DAGSTER_HOME=str(self.dagster_home),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(REPO),  # the drills' own definitions module lives under tests/
            # The sample day is fixed in the past: a user setting lets it be sent (and retried).
            MUSICBUTLER_MAX_SEND_AGE_DAYS="3650",
        )
        env.update(self.extra_env)
        return env

    def start(self, *args: str, log_name: str | None = None) -> subprocess.Popen[str]:
        """Start a command (``musicbutler …`` or ``dagster-daemon …``) in its own process group."""
        program, *rest = args
        executable = (
            [sys.executable, "-m", "musicbutler_pipeline.cli"]
            if program == "musicbutler"
            else [str(Path(sys.executable).with_name(program))]
        )
        log = (self.root / f"{log_name or program}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [*executable, *rest],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        process.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def musicbutler(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "musicbutler_pipeline.cli", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ledger(self, day: str = DAY) -> list[SendRow]:
        from datetime import date

        return SendLedger(self.engine).day(date.fromisoformat(day))

    def stop_all(self) -> None:
        # Each group, even when its leader is gone: a leader that exited (or was killed by the
        # drill) may have left children behind, such as a daemon's code servers.
        for process in self.processes:
            with _suppress_lookup():
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with _suppress_lookup():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class _suppress_lookup:  # noqa: N801 - used like contextlib.suppress
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError)


def output(process: subprocess.Popen[str]) -> str:
    return process.log_path.read_text()  # type: ignore[attr-defined]


def wait_for(
    condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def make_drill(root: Path, database: Callable[[], str], mail_url: str) -> Iterator[Drill]:
    # ListenBrainz on loopback answers 204 (stats not computed yet): libraries stay as imported.
    listenbrainz = LoopbackServer()
    listenbrainz.handler = lambda _request: Reply(204, b"")
    listenbrainz.start()
    warehouse_url, instance_url = database(), database()
    engine = make_engine(warehouse_url)
    upgrade(engine)
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    drill = Drill(root, warehouse_url, instance_url, mail_url, engine, f"{listenbrainz.url}/1")
    drill.dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", drill.dagster_home / "dagster.yaml")
    # As in production: create the instance's schema once, before processes share it.
    dagster = str(Path(sys.executable).with_name("dagster"))
    for command in (
        ["instance", "migrate"],
        *(["instance", "concurrency", "set", pool, "1"] for pool in POOLS),
    ):
        subprocess.run(
            [dagster, *command],
            env=drill.env,
            cwd=root,
            check=True,
            capture_output=True,
            timeout=120,
        )
    try:
        yield drill
    finally:
        drill.stop_all()
        engine.dispose()
        listenbrainz.stop()

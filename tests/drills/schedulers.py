"""Real schedulers at the shipped defaults, for the detection drills.

A ``Site`` is one installation as a new operator would make it: ``MUSICBUTLER_HOME`` and
``DAGSTER_HOME`` and nothing else (Dagster's SQLite storage, the SQLite warehouse), or the
production shape (deploy/dagster.yaml, PostgreSQL instance and warehouse). Processes can run in
their own UTS+PID namespaces with their own hostnames: other machines sharing only the databases.
No setting shortens any wait.
"""

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
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance
from sqlalchemy import Engine, text

from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import upgrade
from tests.drills.environment import REPO, wait_for

BIN = Path(sys.executable).parent
# What the issue promises: seen within 2 minutes of the second scheduler's start, and healthy
# again about 2 minutes after both are stopped.
DETECTION_BOUND = 120.0
RECOVERY_BOUND = 150.0
# How long a false-alarm drill watches: past the evidence window, a heartbeat interval and a
# workspace reload of the daemon (every 60 s).
QUIET_WATCH = 75.0
SCHEDULER = ("dagster-daemon", "run", "-m", "musicbutler_pipeline.definitions")
UNSHARE = shutil.which("unshare")


@dataclass
class Site:
    root: Path
    storage: str  # "sqlite" or "postgres"
    warehouse_url: str | None = None
    instance_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def engine_url(self) -> str:
        return self.warehouse_url or f"sqlite:///{self.home / 'warehouse.db'}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))
        }
        env.update(
            MUSICBUTLER_HOME=str(self.home),
            DAGSTER_HOME=str(self.dagster_home),
            # Configured offline as README shows after the demo, so `doctor` has nothing to say
            # about the configuration and reports only what the drill is about.
            MUSICBUTLER_MUSICBRAINZ_URL=bundled_snapshot_root().as_uri(),
            MUSICBUTLER_LISTENBRAINZ_URL="off",
            PYTHONUNBUFFERED="1",
        )
        if self.warehouse_url:
            env["MUSICBUTLER_WAREHOUSE_URL"] = self.warehouse_url
        if self.instance_url:
            env["MUSICBUTLER_DAGSTER_POSTGRES_URL"] = self.instance_url
        env.update(self.extra_env)
        return env

    def command(self, *args: str, host: str | None = None) -> list[str]:
        program, *rest = args
        executable = (
            [sys.executable, "-m", "musicbutler_pipeline.cli"]
            if program == "musicbutler"
            else [str(BIN / program)]
        )
        if host is None:
            return [*executable, *rest]
        assert UNSHARE, "unshare (util-linux) is needed for the other-host drills"
        return [
            UNSHARE,
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            f'hostname {host} && exec "$@"',
            "sh",
            *executable,
            *rest,
        ]

    def start(self, *args: str, host: str | None = None) -> subprocess.Popen[str]:
        """Start a command in its own process group (and namespaces, given a host)."""
        log = (self.root / f"{args[0]}-{host or 'here'}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            self.command(*args, host=host),
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

    def doctor(self, host: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("musicbutler", "doctor", host=host),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def engine(self) -> Engine:
        return make_engine(self.engine_url)

    def stop(self, process: subprocess.Popen[str], timeout: float = 60) -> None:
        # SIGINT, not SIGTERM: a daemon that is pid 1 of its namespace only gets signals it
        # handles, and Python handles SIGINT.
        if process.poll() is None:
            _signal_group(process, signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        # The group may still hold the daemon's code server for a moment.
        _signal_group(process, signal.SIGKILL)

    def stop_all(self) -> None:
        for process in self.processes:
            self.stop(process, timeout=30)


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def make_site(root: Path, storage: str, database: Callable[[], str] | None) -> Iterator[Site]:
    if storage == "postgres":
        assert database is not None
        site = Site(root, storage, warehouse_url=database(), instance_url=database())
    else:
        site = Site(root, storage)
    site.dagster_home.mkdir(parents=True)
    engine = site.engine()
    upgrade(engine)  # `musicbutler db upgrade`, as in the setup steps
    engine.dispose()
    if storage == "postgres":
        shutil.copy(REPO / "deploy" / "dagster.yaml", site.dagster_home / "dagster.yaml")
    # Create the instance's storage before processes share it (Dagster's SQLite storage is not
    # safe to create from two processes at once: the test reads it while the first daemon starts).
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        env=site.env,
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield site
    finally:
        site.stop_all()


def scheduler_heartbeat(site: Site) -> float | None:
    """When the instance's SCHEDULER heartbeat was last written, read as any process would."""
    instance = DagsterInstance.from_config(str(site.dagster_home))
    try:
        beat = instance.get_daemon_heartbeats().get("SCHEDULER")
    finally:
        instance.dispose()
    return beat.timestamp if beat else None


def wait_until_serving(site: Site, since: float) -> None:
    """The first scheduler serves its code: it wrote a SCHEDULER heartbeat after ``since``."""
    wait_for(
        lambda: (scheduler_heartbeat(site) or 0) > since,
        timeout=180,
        what="the first scheduler's heartbeat",
        interval=1,
    )


@dataclass
class Detection:
    delay: float  # seconds from the second scheduler's start to `doctor` exiting 1
    output: str
    first_signals: dict[str, float]  # signal -> seconds after the second start it was first seen

    def first(self) -> str:
        return min(self.first_signals, key=self.first_signals.__getitem__, default="?")


def wait_for_detection(
    site: Site, started: datetime, names: tuple[str, ...], doctor_host: str | None = None
) -> Detection:
    """Poll `musicbutler doctor` until it exits 1 naming every one of ``names``."""

    def detected() -> subprocess.CompletedProcess[str] | None:
        result = site.doctor(doctor_host)
        found = result.returncode == 1 and "scheduler daemons are running" in result.stdout
        return result if found and all(name in result.stdout for name in names) else None

    result = wait_for(
        detected,
        timeout=DETECTION_BOUND - (datetime.now(UTC) - started).total_seconds(),
        what=f"`musicbutler doctor` to report two schedulers ({', '.join(names)})",
        interval=1,
    )
    delay = (datetime.now(UTC) - started).total_seconds()
    assert isinstance(result, subprocess.CompletedProcess)
    assert delay <= DETECTION_BOUND, f"doctor saw it {delay:.0f}s after the start"
    return Detection(delay, result.stdout, first_signals(site, started))


def first_signals(site: Site, started: datetime) -> dict[str, float]:
    """When each signal first showed the second scheduler, in seconds after it started."""
    from musicbutler_pipeline.domain.schedulers import PRESENCE_PERIOD
    from musicbutler_pipeline.services.schedulers import scheduler_evidence
    from musicbutler_pipeline.warehouse.dialect import as_utc

    engine = site.engine()
    try:
        evidence = scheduler_evidence(engine, now=datetime.now(UTC))
        found: dict[str, float] = {}
        if len(evidence.concurrent) >= 2:
            both = max(p.first_seen for p in evidence.concurrent) + 2 * PRESENCE_PERIOD
            found["presence"] = (both - started).total_seconds()
        with engine.connect() as connection:
            for signal_name, first_seen in connection.execute(
                text("SELECT signal, min(first_seen) FROM scheduler_signals GROUP BY signal")
            ):
                moment = (
                    datetime.fromisoformat(first_seen)
                    if isinstance(first_seen, str)
                    else first_seen
                )
                found[signal_name] = (as_utc(moment) - started).total_seconds()
        return found
    finally:
        engine.dispose()


def wait_for_recovery(site: Site, stopped: float, doctor_host: str | None = None) -> float:
    """Seconds from both schedulers stopped until `doctor` reports no problem."""
    wait_for(
        lambda: site.doctor(doctor_host).returncode == 0,
        timeout=RECOVERY_BOUND,
        what="`musicbutler doctor` healthy again after both schedulers stopped",
        interval=2,
    )
    return time.monotonic() - stopped


def watch_quietly(site: Site, seconds: float, doctor_host: str | None = None) -> int:
    """Run `doctor` for ``seconds``; fail on the first problem it reports. Returns how often."""
    deadline = time.monotonic() + seconds
    checks = 0
    while time.monotonic() < deadline:
        result = site.doctor(doctor_host)
        assert result.returncode == 0, f"false alarm:\n{result.stdout}{result.stderr[-2000:]}"
        checks += 1
    return checks


def operator_emails(site: Site) -> list[Path]:
    """Operator alerts in the default file outbox ($MUSICBUTLER_HOME/outbox)."""
    outbox = site.home / "outbox"
    return [
        path
        for path in sorted(outbox.glob("*.eml"))
        if "Subject: [MusicButler]" in path.read_text(errors="replace")
    ]


def child_code_servers(pid: int) -> set[int]:
    """The `dagster api grpc` children of a daemon (their pids change at each reload)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"api\0grpc" in cmdline:
                found.add(int(child))
    return found

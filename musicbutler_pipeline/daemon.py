"""`musicbutler daemon`: the production scheduler, one per Dagster instance.

Two `dagster-daemon` processes on one instance each launch every schedule tick, and Dagster only
logs it. So we take an exclusive lock for the instance first (a PostgreSQL advisory lock on the
instance's own database when its storage is PostgreSQL, else a file lock in DAGSTER_HOME), then
run `dagster-daemon run` as a child for as long as we hold it. A second `musicbutler daemon`
waits or exits; if the lock is lost (the database connection dropped), the child is stopped; if
we die, even by SIGKILL, the kernel kills the child (Linux: the parent-death signal).

The child's output passes through us: Dagster's "Another SCHEDULER daemon is still sending
heartbeats" line, which it logs at every heartbeat while a second daemon shares the instance
(whatever code that one runs), is recorded in the warehouse as evidence of a second scheduler.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from dagster import DagsterInstance
from sqlalchemy import Engine

from musicbutler_pipeline.definitions import defs
from musicbutler_pipeline.domain.schedulers import DAEMON_LOG_SIGNAL, another_daemon_in_log
from musicbutler_pipeline.locks import ExclusiveLock
from musicbutler_pipeline.processes import dying_with_this_process
from musicbutler_pipeline.runner import ensure_pool_limits, instance_lock, job_pools
from musicbutler_pipeline.sensors.presence import report_evidence
from musicbutler_pipeline.settings import Settings
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.monitoring import record_signal

logger = logging.getLogger(__name__)

HEALTH_CHECK_SECONDS = 5.0
STOP_GRACE_SECONDS = 30.0


def daemon_command(module: str) -> list[str]:
    executable = Path(sys.executable).with_name("dagster-daemon")
    return [str(executable), "run", "-m", module]


def run_daemon(
    instance: DagsterInstance,
    *,
    wait: bool,
    module: str = "musicbutler_pipeline.definitions",
    command: list[str] | None = None,
    warehouse_url: str | None = None,
) -> int:
    """Hold the instance lock and run the Dagster daemon under it. Returns an exit code."""
    lock = instance_lock(instance)
    if not lock.try_acquire():
        holder = lock.holder()
        if not wait:
            logger.error("another scheduler holds the instance lock (%s): not starting", holder)
            return 1
        logger.warning("another scheduler holds the instance lock (%s): waiting", holder)
        lock.acquire(wait=True)
    try:
        ensure_pool_limits(instance, job_pools(defs))
        logger.info("instance lock taken; starting %s", " ".join(command or daemon_command(module)))
        engine = make_engine(warehouse_url or Settings.from_env().warehouse_url)
        try:
            # A supervisor killed outright must not leave its scheduler running without the lock.
            child = subprocess.Popen(
                dying_with_this_process(command or daemon_command(module)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            # Dagster's daemon logs to stdout; its code servers' warnings go to stderr.
            relays = [
                threading.Thread(
                    target=_relay, args=(child, source, sink, engine), name=name, daemon=True
                )
                for source, sink, name in (
                    (child.stdout, sys.stdout, "daemon-stdout"),
                    (child.stderr, sys.stderr, "daemon-stderr"),
                )
            ]
            for relay in relays:
                relay.start()
            code = _supervise(child, lock)
            for relay in relays:
                relay.join(timeout=STOP_GRACE_SECONDS)
            return code
        finally:
            engine.dispose()
    finally:
        lock.release()


def _relay(
    child: subprocess.Popen[bytes], source: IO[bytes] | None, sink: TextIO, engine: Engine
) -> None:
    """Pass one of the child's output streams on, and record each "Another … daemon" line."""
    if source is None:
        return
    for line in iter(source.readline, b""):
        sink.buffer.write(line)
        sink.flush()
        daemon_type = another_daemon_in_log(line.decode(errors="replace"))
        if daemon_type is None:
            continue
        host = socket.gethostname()
        logger.error(
            "a second %s daemon shares this instance (Dagster says so in its log)", daemon_type
        )
        now = datetime.now(UTC)
        try:
            record_signal(
                engine,
                DAEMON_LOG_SIGNAL,
                f"{daemon_type} {host}:{child.pid}",
                f"Dagster's {daemon_type} daemon under `musicbutler daemon` (dagster-daemon pid "
                f"{child.pid} on {host}) logs that another {daemon_type} daemon is still sending "
                "heartbeats",
                now=now,
            )
            report_evidence(engine, now)
        except Exception:
            # Relaying the log matters more than recording it; the next line tries again.
            logger.warning("could not record the second daemon in the warehouse", exc_info=True)


def _supervise(child: subprocess.Popen[bytes], lock: ExclusiveLock) -> int:
    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                return child.wait(timeout=HEALTH_CHECK_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if not lock.is_healthy():
                logger.error(
                    "lost the instance lock: stopping the scheduler so no other one runs beside it"
                )
                child.terminate()
                try:
                    child.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

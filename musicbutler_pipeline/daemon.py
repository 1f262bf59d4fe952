"""`musicbutler daemon`: the production scheduler, one per Dagster instance.

Two `dagster-daemon` processes on one instance each launch every schedule tick, and Dagster only
logs it. So we take an exclusive lock for the instance first (a PostgreSQL advisory lock on the
instance's own database when its storage is PostgreSQL, else a file lock in DAGSTER_HOME), then
run `dagster-daemon run` as a child for as long as we hold it. A second `musicbutler daemon`
waits or exits; if the lock is lost (the database connection dropped), the child is stopped.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from dagster import DagsterInstance

from musicbutler_pipeline.definitions import defs
from musicbutler_pipeline.locks import AdvisoryLock, ExclusiveLock, FileLock
from musicbutler_pipeline.runner import ensure_pool_limits, job_pools

logger = logging.getLogger(__name__)

LOCK_NAME = "musicbutler:scheduler-daemon"
HEALTH_CHECK_SECONDS = 5.0
STOP_GRACE_SECONDS = 30.0


def instance_lock(instance: DagsterInstance) -> ExclusiveLock:
    """The lock that makes a scheduler the only one for this instance."""
    postgres_url = getattr(instance.run_storage, "postgres_url", None)
    if postgres_url:
        return AdvisoryLock(postgres_url, LOCK_NAME)
    root = Path(instance.root_directory)
    return FileLock(root / "musicbutler-daemon.lock", LOCK_NAME)


def daemon_command(module: str) -> list[str]:
    executable = Path(sys.executable).with_name("dagster-daemon")
    return [str(executable), "run", "-m", module]


def run_daemon(
    instance: DagsterInstance,
    *,
    wait: bool,
    module: str = "musicbutler_pipeline.definitions",
    command: list[str] | None = None,
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
        return _supervise(subprocess.Popen(command or daemon_command(module)), lock)
    finally:
        lock.release()


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

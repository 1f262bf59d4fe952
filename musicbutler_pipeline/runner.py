"""Running the daily job in-process on the Dagster instance, as `musicbutler run` does."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import filelock
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, Definitions, RunsFilter
from sqlalchemy.exc import SQLAlchemyError

from musicbutler_pipeline.assets import drop_notifications
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.locks import ExclusiveLock, scheduler_lock
from musicbutler_pipeline.processes import process_alive
from musicbutler_pipeline.resources.readiness import configuration_problems
from musicbutler_pipeline.settings import NotConfigured, Settings

logger = logging.getLogger(__name__)

LAUNCHED_BY_TAG = "musicbutler/launched-by"
HOST_TAG = "musicbutler/host"
PID_TAG = "musicbutler/pid"


def ensure_configured(definitions: Definitions) -> None:
    """Raise ``NotConfigured`` when a resource of ``definitions`` lacks a setting it needs: a run,
    or a scheduler that would launch runs, is refused before it starts rather than failing later."""
    if problems := configuration_problems(definitions.resources or {}):
        raise NotConfigured(problems)


@dataclass(frozen=True)
class RunSummary:
    day: date
    run_id: str
    success: bool
    notifications: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def sent(self) -> int:
        return int(self.notifications.get("sent", 0))

    @property
    def locked_by(self) -> str:
        return str(self.notifications.get("day_locked_by_another_process", ""))

    def _count(self, key: str) -> int:
        return int(self.notifications.get(key, 0))

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def unknown(self) -> int:
        """Sent by this run, final reply lost: neither sent nor failed, never retried."""
        return self._count("outcome_unknown")

    @property
    def stale_claims(self) -> int:
        return self._count("skipped_stale_claims")

    @property
    def all_sent(self) -> bool:
        """Nothing this run tried failed, and no email of the day is failed or unknown."""
        return (
            self.failed == 0
            and self._count("owed_not_sent_retryable") == 0
            and self._count("owed_not_sent_unknown") == 0
        )


INSTANCE_LOCK_FILE = ".musicbutler-instance.lock"
# The local instance settings, shipped in the package.
INSTANCE_SETTINGS = Path(__file__).with_name("dagster.yaml")


def dagster_instance(settings: Settings) -> DagsterInstance:
    """The instance in ``DAGSTER_HOME`` (``$MUSICBUTLER_HOME/dagster`` when unset, given the
    project's instance settings the first time: see ``ensure_instance_settings``).

    Opened under a file lock in ``DAGSTER_HOME``: opening a new SQLite-backed instance creates
    and stamps its tables, and two processes doing that at once crash ("table runs already
    exists"). The lock is held only while the instance opens, so runs still run side by side.
    """
    home = prepare_dagster_home(settings)
    with filelock.FileLock(home / INSTANCE_LOCK_FILE, is_singleton=False):
        return DagsterInstance.get()


def prepare_dagster_home(settings: Settings) -> Path:
    """``DAGSTER_HOME`` for this process (set when unset), created, with the project's instance
    settings when it is the default one. Returns it."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if home == settings.home / "dagster":
        ensure_instance_settings(home)
    return home


def ensure_instance_settings(home: Path) -> bool:
    """Write the project's ``dagster.yaml`` (telemetry off, the queued run coordinator, the run
    and pool limits of the exactly-once design) into ``home`` unless a ``dagster.yaml`` is already
    there. Returns whether it wrote one.

    Written whole to a temporary file and hard-linked into place: the link fails when the file
    exists, so two processes starting at once write it once, an operator's own file is never
    replaced, and Dagster never reads a half-written one.
    """
    target = home / "dagster.yaml"
    if target.exists():
        return False
    descriptor, temporary = tempfile.mkstemp(dir=home, prefix=".dagster.yaml.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(INSTANCE_SETTINGS.read_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from a webserver's user
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
    finally:
        os.unlink(temporary)
    logger.info("wrote the project's instance settings to %s", target)
    return True


def instance_lock(instance: DagsterInstance) -> ExclusiveLock:
    """The lock `musicbutler daemon` holds while it runs the instance's scheduler."""
    return scheduler_lock(
        postgres_url=getattr(instance.run_storage, "postgres_url", None),
        root_directory=instance.root_directory,
    )


def job_pools(definitions: Definitions) -> set[str]:
    """The concurrency pools the daily job's steps sit in."""
    job = definitions.resolve_job_def(daily_drops_job.name)
    return {pool for node in job.graph.node_defs if (pool := getattr(node, "pool", None))}


def ensure_pool_limits(instance: DagsterInstance, pools: set[str]) -> None:
    """Give each pool a limit of 1 unless the operator set one: a pool has no limit until one is
    set (`dagster instance concurrency set POOL 1` does the same by hand).

    Done before any step runs, because Dagster's lazy initialisation of a pool's default limit
    races when several runs start at once on a PostgreSQL instance.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    for pool in sorted(pools - storage.get_concurrency_keys()):
        try:
            storage.set_concurrency_slots(pool, 1)
        except SQLAlchemyError:
            # Another process initialised it at the same moment; its limit stands.
            if pool not in storage.get_concurrency_keys():
                raise
        logger.info("concurrency pool %s limited to 1", pool)


def dead_runs(instance: DagsterInstance) -> list[DagsterRun]:
    """In-process runs started by `musicbutler run` on this host whose process is gone.

    Nothing else watches them: the run stays STARTED and keeps its concurrency pool slot, so
    the next run of the day would wait for that slot forever.
    """
    host = socket.gethostname()
    runs = instance.get_runs(
        filters=RunsFilter(
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING],
            tags={LAUNCHED_BY_TAG: "musicbutler run", HOST_TAG: host},
        )
    )
    return [
        run
        for run in runs
        if run.tags.get(PID_TAG, "").isdigit() and not process_alive(int(run.tags[PID_TAG]))
    ]


def reap_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark dead in-process runs failed and free their pool slots. Returns their run ids."""
    reaped = []
    for run in dead_runs(instance):
        instance.report_run_failed(
            run, f"its process (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) is gone"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    return reaped


def run_day(
    day: date,
    *,
    definitions: Definitions,
    instance: DagsterInstance,
    log_level: str = "WARNING",
    allow_old: bool = False,
) -> RunSummary:
    """Materialize the five assets for ``day`` and report what the notification step did.

    ``allow_old`` sends a day older than MUSICBUTLER_MAX_SEND_AGE_DAYS (refused otherwise).
    Raises ``NotConfigured`` before anything is recorded in the instance when a resource lacks
    a setting it needs (no failed run is left behind for a configuration that cannot work)."""
    ensure_configured(definitions)
    ensure_pool_limits(instance, job_pools(definitions))
    for run_id in reap_dead_runs(instance):
        logger.warning("run %s died without finishing: marked failed, its pool slots freed", run_id)
    job = definitions.resolve_job_def(daily_drops_job.name)
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={
            LAUNCHED_BY_TAG: "musicbutler run",
            HOST_TAG: socket.gethostname(),
            PID_TAG: str(os.getpid()),
            **({ALLOW_OLD_SEND_TAG: "true"} if allow_old else {}),
        },
    )
    notifications: dict[str, Any] = {}
    # A run that sent nothing new records an observation rather than a materialization.
    node = drop_notifications.op.name
    for event in [
        *result.asset_materializations_for_node(node),
        *result.asset_observations_for_node(node),
    ]:
        notifications = {key: value.value for key, value in event.metadata.items()}
    error = None
    if not result.success:
        failures = [event for event in result.all_events if event.is_step_failure]
        error = (
            "; ".join(
                f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
                for event in failures
                if event.step_failure_data.error is not None
            )
            or "the run failed"
        )
    return RunSummary(day, result.run_id, result.success, notifications, error)

"""A scheduler's own watch: a thread in each scheduler's code server that writes its presence and
samples the instance's heartbeats, whichever daemon happens to evaluate the sensors.

`dagster-daemon run` (and `dagster dev`) start a code server that imports our definitions and
lives as long as the daemon; importing the definitions starts the thread there and nowhere else
(not in the webserver's code server, run workers, CLI commands or tests). Settings are read when
the thread starts, not at import.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance, RunsFilter
from sqlalchemy import Engine

from musicbutler_pipeline.domain.schedulers import (
    DOUBLE_TICK_SIGNAL,
    DUPLICATE_SCHEDULER,
    HEARTBEAT_SAMPLE_PERIOD,
    HEARTBEAT_SIGNAL,
    PRESENCE_PERIOD,
    HeartbeatWatch,
    double_launched_ticks,
)
from musicbutler_pipeline.processes import (
    SchedulerProcess,
    code_version,
    scheduler_of_this_process,
)
from musicbutler_pipeline.resources import MailerResource
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.monitoring import claim_alert, record_presence, record_signal

logger = logging.getLogger(__name__)

TICK_CHECK_PERIOD = timedelta(seconds=30)
LOG_EVERY = timedelta(minutes=1)
TICK_LOOKBACK = timedelta(minutes=10)
SCHEDULE_TAG = "dagster/schedule_name"
SCHEDULED_TIME_TAG = ".dagster/scheduled_execution_time"
PARTITION_TAG = "dagster/partition"
PARENT_RUN_TAG = "dagster/parent_run_id"

_start_lock = threading.Lock()
_watch_thread: threading.Thread | None = None


def start_scheduler_watch() -> threading.Thread | None:
    """Start the watch once, if this process is a scheduler's code server."""
    global _watch_thread
    with _start_lock:
        if _watch_thread is None:
            scheduler = scheduler_of_this_process()
            if scheduler is None:
                return None
            _watch_thread = threading.Thread(
                target=_watch, args=(scheduler,), name="musicbutler-scheduler-watch", daemon=True
            )
            _watch_thread.start()
        return _watch_thread


def _watch(scheduler: SchedulerProcess) -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        logger.error("scheduler watch not started: %s", exc)
        return
    engine = make_engine(settings.warehouse_url)
    parent = os.getppid()
    version = code_version()
    instance = _instance()
    heartbeats = HeartbeatWatch()
    next_presence = next_ticks = time.monotonic()
    complaints = _RateLimit(LOG_EVERY)
    logger.info("scheduler watch: pid %s, code %s", scheduler.pid, version)
    # The code server outlives a SIGKILLed daemon by its heartbeat timeout; a presence must not.
    while os.getppid() == parent and scheduler.alive():
        now = datetime.now(UTC)
        try:
            if instance is not None:
                _sample_heartbeats(engine, instance, heartbeats, now)
            if time.monotonic() >= next_presence:
                next_presence = time.monotonic() + PRESENCE_PERIOD.total_seconds()
                record_presence(
                    engine,
                    pid=scheduler.pid,
                    code_version=version,
                    now=now,
                    started_at=scheduler.started_at,
                )
                report_evidence(engine, now, complaints)
            if instance is not None and time.monotonic() >= next_ticks:
                next_ticks = time.monotonic() + TICK_CHECK_PERIOD.total_seconds()
                _check_ticks(engine, instance, now)
        except Exception:
            # The warehouse may be down or not migrated yet: keep watching, say why (not every
            # two seconds).
            if complaints.due("failure"):
                logger.warning("scheduler watch: this round failed", exc_info=True)
        time.sleep(HEARTBEAT_SAMPLE_PERIOD.total_seconds())
    engine.dispose()


def _instance() -> DagsterInstance | None:
    try:
        return DagsterInstance.get()
    except Exception:
        logger.warning("scheduler watch: no Dagster instance; heartbeats and ticks not watched")
        return None


def _sample_heartbeats(
    engine: Engine, instance: DagsterInstance, watch: HeartbeatWatch, now: datetime
) -> None:
    owners = {
        kind: beat.daemon_id
        for kind, beat in instance.get_daemon_heartbeats().items()
        if beat.daemon_id is not None  # a heartbeat without an id cannot change hands
    }
    for daemon_type, ids in watch.observe(owners, now).items():
        distinct = sorted(set(ids))
        record_signal(
            engine,
            HEARTBEAT_SIGNAL,
            f"{daemon_type} {' '.join(distinct)}",
            f"the {daemon_type} heartbeat keeps changing hands between daemon ids "
            f"{', '.join(distinct)}",
            now=now,
        )


def _check_ticks(engine: Engine, instance: DagsterInstance, now: datetime) -> None:
    runs = instance.get_runs(filters=RunsFilter(created_after=now - TICK_LOOKBACK), limit=500)
    scheduled = [
        (
            run.tags[SCHEDULE_TAG],
            run.tags.get(SCHEDULED_TIME_TAG, ""),
            run.tags.get(PARTITION_TAG),
            run.run_id,
        )
        for run in runs
        if SCHEDULE_TAG in run.tags and PARENT_RUN_TAG not in run.tags
    ]
    for (schedule, tick, partition), run_ids in double_launched_ticks(scheduled).items():
        record_signal(
            engine,
            DOUBLE_TICK_SIGNAL,
            f"{schedule} {tick} {partition or ''}",
            f"schedule {schedule} launched {len(run_ids)} runs for its {tick} tick: "
            + ", ".join(run_ids),
            now=now,
            refresh=False,
        )


class _RateLimit:
    """Say a thing at most once per period (per thing)."""

    def __init__(self, period: timedelta) -> None:
        self._period = period.total_seconds()
        self._last: dict[str, float] = {}

    def due(self, what: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(what, -self._period) < self._period:
            return False
        self._last[what] = now
        return True


def report_evidence(engine: Engine, now: datetime, log_limit: _RateLimit | None = None) -> None:
    """Log what the warehouse shows of a second scheduler; the first reporter in an hour, on any
    host, e-mails the operator."""
    from musicbutler_pipeline.sensors.schedulers import email_operator

    problem = scheduler_evidence(engine, now=now).problem
    if problem is None:
        return
    if claim_alert(engine, DUPLICATE_SCHEDULER, problem, now=now):
        logger.error("DUPLICATE SCHEDULER: %s", problem)
        email_operator(MailerResource(), problem, now)
    elif log_limit is None or log_limit.due("problem"):
        logger.error("DUPLICATE SCHEDULER: %s", problem)

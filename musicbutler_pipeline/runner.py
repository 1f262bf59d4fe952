"""Running the daily job in-process on the Dagster instance, as `musicbutler run` does."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dagster import DagsterInstance, Definitions

from musicbutler_pipeline.settings import Settings

logger = logging.getLogger(__name__)

JOB_NAME = "daily_drops_job"


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


def dagster_instance(settings: Settings) -> DagsterInstance:
    """The instance in ``DAGSTER_HOME`` (created under ``MUSICBUTLER_HOME`` when unset)."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    return DagsterInstance.get()


def run_day(
    day: date,
    *,
    definitions: Definitions,
    instance: DagsterInstance,
    log_level: str = "WARNING",
) -> RunSummary:
    """Materialize the four assets for ``day`` and report what the notification step did."""
    job = definitions.resolve_job_def(JOB_NAME)
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"musicbutler/launched-by": "musicbutler run"},
    )
    notifications: dict[str, Any] = {}
    for materialization in result.asset_materializations_for_node("drop_notifications"):
        notifications = {key: value.value for key, value in materialization.metadata.items()}
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

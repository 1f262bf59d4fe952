"""The daily job's executor and the notification asset's shape, from the environment when the
definitions load.

Both are part of the definitions (Dagster fixes a job's executor and an asset's steps when the code
location loads), so they are read then, not at run start like the other settings: a code server,
the daemon and every Celery worker must load the definitions with the same ``MUSICBUTLER_EXECUTOR``
and ``MUSICBUTLER_SEND_SHARDS``. A malformed value does not stop the definitions from loading (the
UI and `musicbutler doctor` still start); it is logged here and, because ``Settings.from_env``
validates the same variables, stops every run at start with the variable's line.
"""

import logging

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from musicbutler_pipeline.settings import ExecutionSettings, SettingsError

logger = logging.getLogger(__name__)

# Steps whose code reads the warehouse through SQLAlchemy: Celery's workers import these modules.
CELERY_INCLUDE = ["musicbutler_pipeline.definitions"]


def execution_settings() -> ExecutionSettings:
    """The variables as they are now, or the defaults (with the problem logged) when malformed."""
    try:
        return ExecutionSettings.from_env()
    except SettingsError as exc:
        logger.error("%s (the definitions load with the defaults; runs will refuse to start)", exc)
        return ExecutionSettings()


def executor_for(settings: ExecutionSettings) -> ExecutorDefinition:
    """Dagster's multiprocess executor (its default), in-process, or dagster-celery's."""
    if settings.executor == "in_process":
        return in_process_executor
    if settings.executor == "celery":
        # Imported only when chosen: Celery's import costs every command a second otherwise.
        from dagster_celery import celery_executor

        config: dict[str, object] = {"broker": settings.celery_broker}
        if settings.celery_backend:
            config["backend"] = settings.celery_backend
        return celery_executor.configured(config, name="celery_executor")
    return multiprocess_executor

"""A failed daily run e-mails the operator, once per run, whichever daemon sees it first."""

from datetime import UTC, datetime

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import ONCE, RUN_FAILED, run_failed_text

PARTITION_TAG = "dagster/partition"


@run_failure_sensor(
    monitored_jobs=[daily_drops_job],
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Logs every failed daily run at ERROR with its partition and the failed steps' one-line "
        "errors, and e-mails them to MUSICBUTLER_OPERATOR_EMAIL once per run."
    ),
)
def daily_drops_failure_sensor(
    context: RunFailureSensorContext, warehouse: WarehouseResource, mailer: MailerResource
) -> None:
    run = context.dagster_run
    failures = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        # A `Failure` carries its one line as a description; other errors as their message.
        description = data.user_failure_data.description if data.user_failure_data else None
        message = description or (data.error.message.strip() if data.error else "failed")
        failures.append(f"{event.step_key}: {message}")
    text = run_failed_text(run.tags.get(PARTITION_TAG, "?"), run.job_name, run.run_id, failures)
    context.log.error("%s", text)
    mailer.alert_operator(
        warehouse.engine,
        RUN_FAILED,
        text,
        now=datetime.now(UTC),
        claim=f"{RUN_FAILED}:{run.run_id}",
        period=ONCE,
    )

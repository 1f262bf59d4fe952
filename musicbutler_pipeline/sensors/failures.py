from dagster import RunFailureSensorContext, run_failure_sensor

from musicbutler_pipeline.jobs import daily_drops_job


@run_failure_sensor(
    monitored_jobs=[daily_drops_job],
    description="Logs every failed daily run at ERROR with its partition and failure.",
)
def daily_drops_failure_sensor(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    context.log.error(
        "%s run %s for partition %s failed: %s",
        run.job_name,
        run.run_id,
        run.tags.get("dagster/partition", "?"),
        context.failure_event.message,
    )

"""The project's definitions with only the retry sensor, ticking every few seconds with a short
backoff (the same parameters a deployment can pass), so a drill sees a retry in a test's time."""

from datetime import timedelta

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.sensors.retries import build_retry_sensor

SENSOR_INTERVAL_SECONDS = 5

defs = build_definitions(
    schedules=[],
    sensors=[
        build_retry_sensor(
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            backoff=timedelta(seconds=2),
            max_backoff=timedelta(seconds=10),
        )
    ],
)

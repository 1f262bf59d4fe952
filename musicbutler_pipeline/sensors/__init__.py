"""Sensors that show the operator what went wrong."""

from musicbutler_pipeline.sensors.deadlines import build_send_deadline_sensor
from musicbutler_pipeline.sensors.failures import daily_drops_failure_sensor
from musicbutler_pipeline.sensors.retries import build_retry_sensor
from musicbutler_pipeline.sensors.schedulers import build_duplicate_scheduler_sensor

duplicate_scheduler_sensor = build_duplicate_scheduler_sensor()
retry_failed_sends_sensor = build_retry_sensor()
send_deadline_sensor = build_send_deadline_sensor()

all_sensors = [
    daily_drops_failure_sensor,
    duplicate_scheduler_sensor,
    retry_failed_sends_sensor,
    send_deadline_sensor,
]

__all__ = [
    "all_sensors",
    "daily_drops_failure_sensor",
    "duplicate_scheduler_sensor",
    "retry_failed_sends_sensor",
    "send_deadline_sensor",
]

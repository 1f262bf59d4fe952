"""Sensors that show the operator what went wrong."""

from musicbutler_pipeline.sensors.failures import daily_drops_failure_sensor

all_sensors = [daily_drops_failure_sensor]

__all__ = ["all_sensors", "daily_drops_failure_sensor"]

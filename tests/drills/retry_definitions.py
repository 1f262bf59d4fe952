"""The project's definitions with only the retry sensor (no schedule firing during a drill).
It runs at its shipped tick interval; a drill shortens the backoff only through the user settings
MUSICBUTLER_RETRY_BACKOFF_SECONDS and MUSICBUTLER_RETRY_MAX_BACKOFF_SECONDS."""

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.sensors import retry_failed_sends_sensor

defs = build_definitions(schedules=[], sensors=[retry_failed_sends_sensor])

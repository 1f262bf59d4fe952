"""Scheduler evidence, assembled: what every host wrote to the warehouse, judged by the rules in
domain/schedulers.py. The sensors, checks and ``musicbutler doctor`` ask here."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from musicbutler_pipeline.domain.schedulers import EVIDENCE_WINDOW, SchedulerEvidence, evidence
from musicbutler_pipeline.warehouse.monitoring import recent_presences, recent_signals


def scheduler_evidence(
    engine: Engine, *, now: datetime, window: timedelta = EVIDENCE_WINDOW
) -> SchedulerEvidence:
    """The presences and signals seen within ``window`` before ``now``, from every host."""
    return evidence(
        recent_presences(engine, since=now - window), recent_signals(engine, since=now - window)
    )

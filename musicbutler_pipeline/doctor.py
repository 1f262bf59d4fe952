"""`musicbutler doctor`: is this installation healthy? Plain findings, exit 1 on any problem."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from musicbutler_pipeline.domain.ledger import STALE_AFTER, SendLedger
from musicbutler_pipeline.monitoring import (
    ALERT_PERIOD,
    DUPLICATE_SCHEDULER,
    latest_alert,
    scheduler_evidence,
)
from musicbutler_pipeline.settings import Settings
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import current_revision, head_revision

logger = logging.getLogger(__name__)

HEARTBEAT_FRESH = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "ok", "note" or "PROBLEM"
    message: str


def diagnose(settings: Settings, now: datetime | None = None) -> list[Finding]:
    now = now or datetime.now(UTC)
    findings = [
        Finding(
            "ok",
            f"configuration: warehouse {_safe(settings.warehouse_url)}, "
            f"mail {settings.mail_url.split(':', 1)[0]}://…, "
            f"MusicBrainz {settings.musicbrainz_url}",
        )
    ]
    engine = make_engine(settings.warehouse_url)
    try:
        try:
            current, head = current_revision(engine), head_revision(engine)
        except SQLAlchemyError as exc:
            return [
                *findings,
                Finding(
                    "PROBLEM",
                    f"warehouse unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                ),
            ]
        if current != head:
            return [
                *findings,
                Finding(
                    "PROBLEM",
                    f"warehouse schema at {current or 'nothing'}, "
                    f"code expects {head}: run `musicbutler db upgrade`",
                ),
            ]
        findings.append(Finding("ok", f"warehouse schema at {head}"))
        findings += _ledger_findings(SendLedger(engine))
        findings += _scheduler_findings(settings, engine, now)
    finally:
        engine.dispose()
    return findings


def _ledger_findings(ledger: SendLedger) -> list[Finding]:
    findings = []
    for day, subscriber_id, rows in ledger.duplicate_sends():
        findings.append(
            Finding("PROBLEM", f"subscriber {subscriber_id} has {rows} sends for {day}")
        )
    unresolved = ledger.unresolved_claims(STALE_AFTER)
    for row, why in unresolved:
        findings.append(
            Finding(
                "PROBLEM",
                f"stale claim: {row.partition_date} {row.recipient} (run {row.run_id}, "
                f"pid {row.pid} on {row.host}): {why}; resolve with "
                f"`musicbutler sends reconcile --date {row.partition_date} --resend|--mark-sent`",
            )
        )
    if not findings:
        findings.append(Finding("ok", "send ledger: no duplicate sends, no stale claims"))
    return findings


def _scheduler_findings(settings: Settings, engine: Engine, now: datetime) -> list[Finding]:
    from musicbutler_pipeline.daemon import instance_lock
    from musicbutler_pipeline.runner import dagster_instance, dead_runs

    findings = []
    # What any host's schedulers recorded in the last minute: seen from every host alike.
    problem = scheduler_evidence(engine, now=now).problem
    if problem:
        findings.append(Finding("PROBLEM", problem))
    alert = latest_alert(engine, DUPLICATE_SCHEDULER, since=now - ALERT_PERIOD)
    if alert and not problem:
        findings.append(
            Finding(
                "note",
                f"a second scheduler was seen at {alert[0]:%H:%M} UTC and is no longer: {alert[1]}",
            )
        )
    instance = dagster_instance(settings)
    try:
        heartbeat = instance.get_daemon_heartbeats().get("SCHEDULER")
        for run in dead_runs(instance):
            findings.append(
                Finding(
                    "PROBLEM",
                    f"run {run.run_id} of {run.job_name} died without finishing and still "
                    "holds its concurrency pool slot; the next `musicbutler run` marks it "
                    "failed and frees it",
                )
            )
        lock = instance_lock(instance)
        lock_free = lock.try_acquire()
        if lock_free:
            lock.release()
        holder = None if lock_free else lock.holder()
    finally:
        instance.dispose()
    fresh = heartbeat is not None and (
        now.timestamp() - heartbeat.timestamp < HEARTBEAT_FRESH.total_seconds()
    )
    if not fresh:
        findings.append(
            Finding(
                "note",
                "no scheduler daemon is running (fine for local use; in "
                "production run `musicbutler daemon`)",
            )
        )
    elif holder:
        findings.append(
            Finding("ok", f"scheduler daemon running under the instance lock ({holder})")
        )
    else:
        findings.append(
            Finding(
                "note",
                "a scheduler daemon is running without `musicbutler daemon`'s instance lock "
                "(`dagster dev`?); in production only `musicbutler daemon` should schedule",
            )
        )
    return findings


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)

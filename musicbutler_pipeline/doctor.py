"""`musicbutler doctor`: is this installation healthy? Plain findings, exit 1 on any problem."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD, DUPLICATE_SCHEDULER
from musicbutler_pipeline.domain.sends import OWED_WINDOW, STALE_AFTER, SendRow
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.processes import sender_gone
from musicbutler_pipeline.resources.readiness import configuration_problems
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.settings import Settings, SettingsError, display_url, secret_key
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.migrate import current_revision, head_revision
from musicbutler_pipeline.warehouse.monitoring import latest_alert

logger = logging.getLogger(__name__)

HEARTBEAT_FRESH = timedelta(minutes=2)
# An unknown outcome stays a problem until an operator resolves it; look back this far for them.
UNKNOWN_LOOKBACK = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "ok", "note" or "PROBLEM"
    message: str


def diagnose(
    settings: Settings, now: datetime | None = None, resources: Mapping[str, object] | None = None
) -> list[Finding]:
    """The findings; ``resources`` are those a run would use (the definitions'), whose needs
    are checked as `musicbutler run` checks them before starting."""
    now = now or datetime.now(UTC)
    problems = configuration_problems(resources or {})
    listenbrainz = settings.listenbrainz_url
    findings = [
        Finding(
            # The problems follow, one a line: this line counts as none of them.
            "ok" if not problems else "note",
            f"configuration: warehouse {_safe(settings.warehouse_url)}, "
            f"mail {_safe(settings.mail_url)}, "
            f"MusicBrainz {_safe(settings.musicbrainz_url)}, "
            f"ListenBrainz {_safe(listenbrainz) if listenbrainz else 'off'}"
            + ("" if not problems else "; a run would be refused:"),
        )
    ]
    findings += [Finding("PROBLEM", str(problem)) for problem in problems]
    if not any(problem.variable == "MUSICBUTLER_SECRET_KEY" for problem in problems):
        findings.append(_signing_key_finding(settings))
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
        # Unsent days matter while they may still be sent, and for a week in any case.
        window = max(OWED_WINDOW, timedelta(days=settings.max_send_age_days))
        findings += _ledger_findings(SendLedger(engine, sender_gone=sender_gone), window=window)
        findings += _scheduler_findings(settings, engine, now)
    finally:
        engine.dispose()
    return findings


def _ledger_findings(
    ledger: SendLedger, today: date | None = None, window: timedelta = OWED_WINDOW
) -> list[Finding]:
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
                f"pid {row.pid} on {row.host}): {why}; {_phase_advice(row)}; resolve with "
                f"`musicbutler sends reconcile --date {row.partition_date} --resend|--mark-sent`",
            )
        )
    today = today or latest_partition_day()
    findings += _unsent_findings(ledger, today, window)
    if not findings:
        findings.append(
            Finding(
                "ok",
                "send ledger: no duplicate sends, no stale claims, no unknown outcomes, "
                f"every owed email of the last {window.days} days sent",
            )
        )
    return findings


def _phase_advice(row: SendRow) -> str:
    if row.may_have_been_delivered:
        return (
            f"it reached phase '{row.phase}' (the message went out or was going out): check the "
            "mail server's log for its Message-ID before choosing"
        )
    return f"it reached phase '{row.phase}' (before the message body): --resend is safe"


def _unsent_findings(ledger: SendLedger, today: date, window: timedelta) -> list[Finding]:
    """Unknown outcomes (until resolved, whatever their age) and days with owed email not sent
    (failed temporarily, or never attempted on a past day) within ``window``."""
    findings = []
    by_day: dict[date, int] = {}
    for row in ledger.unknown_outcomes(since=today - UNKNOWN_LOOKBACK):
        by_day[row.partition_date] = by_day.get(row.partition_date, 0) + 1
    for day, count in sorted(by_day.items()):
        findings.append(
            Finding(
                "PROBLEM",
                f"{day}: {count} email(s) with an unknown outcome (the message went out, the "
                "final reply never came; never retried): check the mail server's log, then "
                f"`musicbutler sends reconcile --date {day} --mark-sent|--resend`",
            )
        )
    for unsent in ledger.unsent_days(today - window, today):
        never = unsent.never_claimed if unsent.partition_date < today else 0
        if not (unsent.retryable or never):
            continue
        findings.append(
            Finding(
                "PROBLEM",
                f"{unsent.partition_date}: owed email not sent: {unsent.describe()}; "
                f"`musicbutler sends --date {unsent.partition_date}` shows the errors, "
                f"`musicbutler run --date {unsent.partition_date}` retries the temporary ones",
            )
        )
    return findings


def _scheduler_findings(settings: Settings, engine: Engine, now: datetime) -> list[Finding]:
    from musicbutler_pipeline.runner import dagster_instance, dead_runs, instance_lock

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


def _signing_key_finding(settings: Settings) -> Finding:
    """Whether unsubscribe links are signed with a usable key. Never creates the key file."""
    key_file = settings.home / "secret_key"
    if not os.environ.get("MUSICBUTLER_SECRET_KEY", "").strip() and not key_file.exists():
        return Finding(
            "note",
            f"no signing key yet: the first send makes one in {key_file} (in production set "
            "MUSICBUTLER_SECRET_KEY, the same on every host)",
        )
    try:
        secret_key(settings.home)
    except SettingsError as exc:
        return Finding("PROBLEM", f"signing key for unsubscribe links: {exc}")
    return Finding("ok", "signing key for unsubscribe links is set")


def _safe(url: str) -> str:
    """Every URL doctor shows goes through here: passwords never reach its output."""
    return display_url(url)

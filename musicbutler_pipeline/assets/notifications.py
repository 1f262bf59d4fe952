from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.domain.sends import STALE_AFTER, SendState
from musicbutler_pipeline.locks import send_lock
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.processes import current_sender, sender_gone
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import (
    UNKNOWN_OUTCOME,
    UNSENT_DAY,
    alert_operator,
    unknown_outcome_text,
    unsent_day_text,
)
from musicbutler_pipeline.services.notifier import NotifyReport, send_digests
from musicbutler_pipeline.warehouse.ledger import SendLedger

NOTIFICATION_POOL = "musicbutler_notifications"


@asset(
    partitions_def=daily_partitions,
    deps=[user_drops],
    group_name="musicbutler",
    kinds={"email"},
    pool=NOTIFICATION_POOL,
    op_tags={"musicbutler/side-effect": "email"},
    description=(
        "One digest per subscriber with drops, sent through the mailer. The send ledger decides "
        "whether each email goes out: a re-run or a concurrent run of the day sends nothing twice."
    ),
)
def drop_notifications(
    context: AssetExecutionContext, warehouse: WarehouseResource, mailer: MailerResource
) -> MaterializeResult:
    day = context.partition_time_window.start.date()
    ledger = SendLedger(
        warehouse.engine, current_sender(context.run.run_id), sender_gone=sender_gone
    )
    transport = mailer.open()
    context.log.info("sending %s digests through %s", day, transport.description)
    report = send_digests(
        warehouse.engine,
        day,
        mailer=transport,
        ledger=ledger,
        identity=mailer.identity(),
        lock=send_lock(warehouse.resolved_url(), day),
    )
    counts = ledger.state_counts(day)
    senders = ledger.senders(day)
    # Claims this run skipped whose sender is known dead (or far too old): not "in progress".
    stale = sum(row.partition_date == day for row, _why in ledger.unresolved_claims(STALE_AFTER))
    [unsent] = ledger.unsent_days(day, day) or [None]
    if report.failures:
        context.log.warning("%d sends failed: %s", len(report.failures), report.failures[:5])
    if report.locked_by is None:
        _tell_operator(warehouse, mailer, report, unsent_unknown=unsent.unknown if unsent else 0)
    return MaterializeResult(
        metadata={
            "sent": report.sent,
            "skipped_already_sent": report.already_sent,
            "skipped_in_progress_elsewhere": max(0, report.in_progress - stale),
            "skipped_stale_claims": min(stale, report.in_progress),
            "failed": report.failed,
            "failed_permanently": report.failed_permanently,
            "outcome_unknown": report.unknown,
            "skipped_outcome_unknown_before": report.unknown_before,
            "skipped_failed_permanently_before": report.failed_before,
            "release_groups_announced": report.release_groups_announced,
            "day_locked_by_another_process": report.locked_by or "",
            "ledger_sent_total": counts.get(SendState.SENT, 0),
            "ledger_failed_total": counts.get(SendState.FAILED, 0),
            "ledger_claimed_total": counts.get(SendState.CLAIMED, 0),
            "ledger_unknown_total": counts.get(SendState.UNKNOWN, 0),
            "owed_not_sent_retryable": unsent.retryable if unsent else 0,
            "owed_not_sent_unknown": unsent.unknown if unsent else 0,
            "owed_not_sent_total": unsent.needs_attention if unsent else 0,
            "transport": transport.description,
            "senders": MetadataValue.md(
                markdown_table(("host", "code version", "run", "emails"), senders)
            ),
            "failures": MetadataValue.md(
                markdown_table(("recipient", "error"), report.failures[:20])
            ),
        }
    )


def _tell_operator(
    warehouse: WarehouseResource,
    mailer: MailerResource,
    report: NotifyReport,
    *,
    unsent_unknown: int,
) -> None:
    """E-mail the operator about this run's unsent email (each kind at most once an hour)."""
    if not (report.failed_temporarily or unsent_unknown):
        return
    settings = mailer.environment()
    now = datetime.now(UTC)
    day = report.partition_date
    alerts = []
    if unsent_unknown:
        alerts.append((UNKNOWN_OUTCOME, unknown_outcome_text(day, unsent_unknown)))
    if report.failed_temporarily:
        text = unsent_day_text(day, report.failed_temporarily, settings.max_send_age_days)
        alerts.append((UNSENT_DAY, text))
    for kind, text in alerts:
        alert_operator(
            warehouse.engine,
            kind,
            text,
            operator_email=settings.operator_email,
            mail_from=mailer.sender(),
            mailer=mailer.open(),
            now=now,
        )

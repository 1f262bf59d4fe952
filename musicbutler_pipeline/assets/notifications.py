from collections.abc import Iterator
from datetime import UTC, date, datetime

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    Output,
    asset,
)

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.findings import NOTIFICATION_FINDINGS
from musicbutler_pipeline.assets.links import listen_links
from musicbutler_pipeline.assets.metadata import column_schema, markdown_table
from musicbutler_pipeline.domain.sends import STALE_AFTER, SendState, stale_send_refusal
from musicbutler_pipeline.locks import send_lock
from musicbutler_pipeline.partitions import daily_partitions, latest_partition_day
from musicbutler_pipeline.processes import current_sender, sender_gone
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import (
    UNKNOWN_OUTCOME,
    UNSENT_DAY,
    unknown_outcome_text,
    unsent_day_text,
)
from musicbutler_pipeline.services.notifier import NotifyReport, send_digests
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.schema import sends

NOTIFICATION_POOL = "musicbutler_notifications"
# A run tag (`musicbutler run --allow-old` sets it) that lets the operator send a day older than
# MUSICBUTLER_MAX_SEND_AGE_DAYS: a backfill of old days sends nothing unless asked to.
ALLOW_OLD_SEND_TAG = "musicbutler/allow-old-send"
NOTIFICATIONS_KEY = AssetKey("drop_notifications")
# What the asset (or the sharded graph's last op) yields.
Notified = MaterializeResult | Output[None] | AssetObservation | AssetCheckEvaluation


@asset(
    partitions_def=daily_partitions,
    deps=[user_drops, listen_links],
    group_name="musicbutler",
    kinds={"email", "sql"},
    owners=["team:operators"],
    code_version="notifications-2",
    metadata={"dagster/column_schema": column_schema(sends)},
    pool=NOTIFICATION_POOL,
    # A rerun that sends nothing new records an observation, not a second materialization.
    output_required=False,
    op_tags={"musicbutler/side-effect": "email"},
    description=(
        "One digest per subscriber with drops, sent through the mailer. The send ledger decides "
        "whether each email goes out: a re-run or a concurrent run of the day sends nothing twice. "
        "Materialized when a run sends (or tries to send) an email; a re-run that finds "
        "everything already sent records an observation with its counts instead, so the "
        "partition's materialization keeps saying what was sent. A day older than "
        "MUSICBUTLER_MAX_SEND_AGE_DAYS is refused unless the run has the tag "
        f"`{ALLOW_OLD_SEND_TAG}=true`."
    ),
)
def drop_notifications(
    context: AssetExecutionContext, warehouse: WarehouseResource, mailer: MailerResource
) -> Iterator[Notified]:
    day = context.partition_time_window.start.date()
    max_send_age_days = mailer.environment().max_send_age_days
    refusal = stale_day_refusal(context, day, max_send_age_days)
    if refusal is not None:
        # Before anything is sent. The checks' steps will be skipped: evaluate them here, so the
        # partition's checks show what is owed rather than "skipped".
        yield from evaluate_planned_checks(context, warehouse)
        raise Failure(
            description=refusal,
            metadata={"refused": f"older than {max_send_age_days} days"},
            allow_retries=False,
        )
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
    yield from conclude_day(context, warehouse, mailer, report, transport.description)


def conclude_day(
    context: AssetExecutionContext | OpExecutionContext,
    warehouse: WarehouseResource,
    mailer: MailerResource,
    report: NotifyReport,
    transport: str,
    *,
    as_output: bool = False,
) -> Iterator[Notified]:
    """What a run that sent the day (or all its shards: ``report`` is their sum) records: the
    operator's alerts, then the partition's materialization with the counts (``as_output``: as
    the output of the sharded graph's last op), or, when it sent nothing new on a partition
    already materialized, an observation with them."""
    day = report.partition_date
    ledger = SendLedger(
        warehouse.engine, current_sender(context.run.run_id), sender_gone=sender_gone
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
    metadata = {
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
        "transport": transport,
        "senders": MetadataValue.md(
            markdown_table(("host", "code version", "run", "emails"), senders)
        ),
        "failures": MetadataValue.md(markdown_table(("recipient", "error"), report.failures[:20])),
        "dagster/column_schema": column_schema(sends),
        "dagster/row_count": sum(counts.values()),
    }
    attempted = report.sent + report.failed + report.unknown
    if attempted == 0 and _already_materialized(context):
        context.log.info(
            "%s: nothing new sent (%d already sent): the partition's materialization stays as it "
            "was, this run's counts are an observation",
            day,
            report.already_sent,
        )
        yield AssetObservation(
            asset_key=NOTIFICATIONS_KEY, partition=context.partition_key, metadata=metadata
        )
        yield from evaluate_planned_checks(context, warehouse)
        return
    yield Output(None, metadata=metadata) if as_output else MaterializeResult(metadata=metadata)


def stale_day_refusal(
    context: AssetExecutionContext | OpExecutionContext, day: date, max_send_age_days: int
) -> str | None:
    """Why this run may not send ``day`` (older than the allowed age: a backfill of last month
    must not e-mail last month's "new music"), or None, also when the run allows it."""
    refusal = stale_send_refusal(day, latest_partition_day(), max_send_age_days)
    if refusal is not None and context.run.tags.get(ALLOW_OLD_SEND_TAG, "").lower() == "true":
        context.log.warning(
            "%s is older than MUSICBUTLER_MAX_SEND_AGE_DAYS=%d: sending anyway, the run has %s",
            day,
            max_send_age_days,
            ALLOW_OLD_SEND_TAG,
        )
        return None
    return refusal


def evaluate_planned_checks(
    context: AssetExecutionContext | OpExecutionContext, warehouse: WarehouseResource
) -> Iterator[AssetCheckEvaluation]:
    """The checks this run planned on the asset, evaluated here: without a materialization
    Dagster skips their steps, and the partition's checks would read "skipped"."""
    storage = context.instance.event_log_storage
    for name, finding in NOTIFICATION_FINDINGS.items():
        key = AssetCheckKey(NOTIFICATIONS_KEY, name)
        planned = [
            record
            for record in storage.get_asset_check_execution_history(key, limit=5)
            if record.run_id == context.run.run_id
            # The status enum is not part of Dagster's public API; its value is stable.
            and record.status.value == "PLANNED"
        ]
        for record in planned:
            result = finding(warehouse, context.partition_key)
            yield AssetCheckEvaluation(
                asset_key=NOTIFICATIONS_KEY,
                check_name=name,
                passed=result.passed,
                severity=result.severity,
                metadata=result.metadata,
                partition=record.partition,
            )


def _already_materialized(context: AssetExecutionContext | OpExecutionContext) -> bool:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=NOTIFICATIONS_KEY, asset_partitions=[context.partition_key]),
        limit=1,
    )
    return bool(records.records)


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
        mailer.alert_operator(
            warehouse.engine,
            kind,
            text,
            now=now,
        )

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.domain.ledger import Sender, SendLedger
from musicbutler_pipeline.locks import send_lock
from musicbutler_pipeline.notifier import send_digests
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import MailerResource, WarehouseResource

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
    ledger = SendLedger(warehouse.engine, Sender.current(context.run.run_id))
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
    if report.failures:
        context.log.warning("%d sends failed: %s", len(report.failures), report.failures[:5])
    return MaterializeResult(
        metadata={
            "sent": report.sent,
            "skipped_already_sent": report.already_sent,
            "skipped_in_progress_elsewhere": report.in_progress,
            "failed": report.failed,
            "skipped_failed_permanently_before": report.failed_before,
            "release_groups_announced": report.release_groups_announced,
            "day_locked_by_another_process": report.locked_by or "",
            "ledger_sent_total": counts.get("sent", 0),
            "ledger_failed_total": counts.get("failed", 0),
            "ledger_claimed_total": counts.get("claimed", 0),
            "transport": transport.description,
            "senders": MetadataValue.md(
                markdown_table(("host", "code version", "run", "emails"), senders)
            ),
            "failures": MetadataValue.md(
                markdown_table(("recipient", "error"), report.failures[:20])
            ),
        }
    )

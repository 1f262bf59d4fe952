"""Asset checks: what the operator must see when the day went wrong."""

from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from musicbutler_pipeline.assets import drop_notifications
from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.domain.ledger import SendLedger
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.repository import unsent_owed

STALE_AFTER = timedelta(minutes=30)
OWED_WINDOW = timedelta(days=7)


@asset_check(
    asset=drop_notifications,
    description=(
        f"Every subscribed subscriber with drops in the last {OWED_WINDOW.days} days has a sent "
        "email. A permanent failure (a rejected address) is a warning; anything else an error."
    ),
)
def every_owed_email_sent(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    since = latest_partition_day() - OWED_WINDOW
    with warehouse.engine.connect() as connection:
        missing = unsent_owed(connection, since)
    only_rejected = all(state == "rejected" for _, _, state, _ in missing)
    return AssetCheckResult(
        passed=not missing,
        severity=AssetCheckSeverity.WARN if only_rejected else AssetCheckSeverity.ERROR,
        metadata={
            "owed_but_not_sent": len(missing),
            "examples": MetadataValue.md(
                markdown_table(("day", "subscriber", "ledger state", "error"), missing[:20])
            ),
        },
    )


@asset_check(
    asset=drop_notifications,
    description=(
        f"No claim older than {STALE_AFTER} is still unresolved (its sender died mid-send). "
        "Resolve with `musicbutler sends reconcile`."
    ),
)
def no_stale_claims(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    stale = SendLedger(warehouse.engine).stale_claims(STALE_AFTER)
    return AssetCheckResult(
        passed=not stale,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "stale_claims": len(stale),
            "examples": MetadataValue.md(
                markdown_table(
                    ("day", "recipient", "host", "pid", "run"),
                    ((r.partition_date, r.recipient, r.host, r.pid, r.run_id) for r in stale[:20]),
                )
            ),
        },
    )


daily_checks = [every_owed_email_sent, no_stale_claims]

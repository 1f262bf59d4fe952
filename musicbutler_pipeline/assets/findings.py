"""What the notification checks find, as functions of the warehouse (and the partition's day).

checks.py declares the checks on `drop_notifications`; the asset calls these too when a rerun sends
nothing and so records no materialization: Dagster skips the checks' own steps then, and the
partition's checks would read as skipped instead of saying what the rerun saw.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD, DUPLICATE_SCHEDULER
from musicbutler_pipeline.domain.sends import STALE_AFTER
from musicbutler_pipeline.processes import sender_gone
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.warehouse.health import release_groups_sent_twice
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.monitoring import latest_alert


def owed_emails_finding(warehouse: WarehouseResource, day: date) -> AssetCheckResult:
    # Evaluated per partition, in the run that sent it: a look-back over the last days would
    # let a day whose every email failed pass as soon as an older failure was resolved.
    ledger = SendLedger(warehouse.engine)
    [unsent] = ledger.unsent_days(day, day) or [None]
    missing = ledger.unsent_emails(day, day)
    only_rejected = unsent is None or unsent.needs_attention == 0
    return AssetCheckResult(
        passed=unsent is None,
        severity=AssetCheckSeverity.WARN if only_rejected else AssetCheckSeverity.ERROR,
        metadata={
            "day": day.isoformat(),
            "owed_but_not_sent": unsent.total if unsent else 0,
            "failed_temporarily": unsent.retryable if unsent else 0,
            "outcome_unknown": unsent.unknown if unsent else 0,
            "rejected": unsent.rejected if unsent else 0,
            "claimed_without_outcome": unsent.claimed if unsent else 0,
            "never_attempted": unsent.never_claimed if unsent else 0,
            "examples": MetadataValue.md(
                markdown_table(("day", "subscriber", "ledger state", "error"), missing[:20])
            ),
        },
    )


def stale_claims_finding(warehouse: WarehouseResource) -> AssetCheckResult:
    stale = SendLedger(warehouse.engine, sender_gone=sender_gone).unresolved_claims(STALE_AFTER)
    return AssetCheckResult(
        passed=not stale,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "unresolved_claims": len(stale),
            "examples": MetadataValue.md(
                markdown_table(
                    ("day", "recipient", "run", "why"),
                    ((r.partition_date, r.recipient, r.run_id, why) for r, why in stale[:20]),
                )
            ),
        },
    )


def duplicate_sends_finding(warehouse: WarehouseResource) -> AssetCheckResult:
    duplicates = SendLedger(warehouse.engine).duplicate_sends()
    with warehouse.engine.connect() as connection:
        repeated = release_groups_sent_twice(connection)
    return AssetCheckResult(
        passed=not duplicates and not repeated,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "subscriber_days_with_two_sends": len(duplicates),
            "release_groups_in_two_emails": len(repeated),
            "examples": MetadataValue.md(
                markdown_table(("subscriber", "release group", "days"), repeated[:20])
            ),
        },
    )


def single_scheduler_finding(warehouse: WarehouseResource) -> AssetCheckResult:
    now = datetime.now(UTC)
    alert = latest_alert(warehouse.engine, DUPLICATE_SCHEDULER, since=now - ALERT_PERIOD)
    problem = scheduler_evidence(warehouse.engine, now=now).problem
    return AssetCheckResult(
        passed=alert is None and problem is None,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "last_alert": f"{alert[0]:%Y-%m-%d %H:%M} UTC: {alert[1]}" if alert else "none",
            "now": problem or "one scheduler",
        },
    )


# Check name -> its finding, given the warehouse and the partition key.
NOTIFICATION_FINDINGS: dict[str, Callable[[WarehouseResource, str], AssetCheckResult]] = {
    "every_owed_email_sent": lambda warehouse, key: owed_emails_finding(
        warehouse, date.fromisoformat(key)
    ),
    "no_stale_claims": lambda warehouse, _key: stale_claims_finding(warehouse),
    "no_duplicate_sends": lambda warehouse, _key: duplicate_sends_finding(warehouse),
    "single_scheduler": lambda warehouse, _key: single_scheduler_finding(warehouse),
}

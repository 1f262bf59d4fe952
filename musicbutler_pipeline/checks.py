"""Asset checks: what the operator must see when the day went wrong.

Each is evaluated for the partition its run materialized and recorded for that day; the ledger-wide
ones (stale claims, duplicates, schedulers) say how things stood when that day ran.
"""

import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PreviewWarning,
    asset_check,
)

from musicbutler_pipeline.assets import drop_notifications
from musicbutler_pipeline.assets.metadata import markdown_table
from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD, DUPLICATE_SCHEDULER
from musicbutler_pipeline.domain.sends import STALE_AFTER
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.processes import sender_gone
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.warehouse.health import release_groups_sent_twice
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.monitoring import latest_alert


def _daily_check(
    **kwargs: Any,
) -> Callable[[Callable[..., AssetCheckResult]], AssetChecksDefinition]:
    """``@asset_check`` on ``drop_notifications`` and the daily partitions: one result per check
    per partition, shown per day in the UI.

    Dagster 1.13 records a check without ``partitions_def`` once per run with no partition (and,
    for a partitioned run, a planned evaluation for the partition that never completes), so the
    day's checks read as skipped and a failed day shows green again as soon as any other day
    passes. Dagster marks partitioned checks preview; that warning is silenced here only, so
    commands keep a one-line stderr.
    """

    def decorate(function: Callable[..., AssetCheckResult]) -> AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreviewWarning)
            return asset_check(asset=drop_notifications, partitions_def=daily_partitions, **kwargs)(
                function
            )

    return decorate


@_daily_check(
    description=(
        "Every subscribed subscriber with drops on this partition's day has a sent email. A "
        "permanent failure (a rejected address) is a warning; anything else (failed "
        "temporarily, outcome unknown, claimed without outcome, never attempted) an error."
    ),
)
def every_owed_email_sent(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    # Evaluated per partition, in the run that sent it: a look-back over the last days would
    # let a day whose every email failed pass as soon as an older failure was resolved.
    day = date.fromisoformat(context.partition_key)
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


@_daily_check(
    description=(
        "No claim is unresolved: its sender died mid-send (the process is gone, or the claim is "
        f"older than {STALE_AFTER}). Never resent automatically; resolve with "
        "`musicbutler sends reconcile`."
    ),
)
def no_stale_claims(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
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


@_daily_check(
    description="No subscriber has two sends for one day, nor one release group in two emails.",
)
def no_duplicate_sends(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
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


@_daily_check(
    description=(
        "One scheduler daemon on the instance. Also reported by `duplicate_scheduler_sensor` "
        "the moment it sees a second one."
    ),
)
def single_scheduler(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
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


daily_checks = [every_owed_email_sent, no_stale_claims, no_duplicate_sends, single_scheduler]

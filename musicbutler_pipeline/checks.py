"""Asset checks: what the operator must see when the day went wrong.

Each is evaluated for the partition its run materialized and recorded for that day; the ledger-wide
ones (stale claims, duplicates, schedulers) say how things stood when that day ran.
"""

import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    PreviewWarning,
    asset_check,
)

from musicbutler_pipeline.assets import drop_notifications
from musicbutler_pipeline.assets.findings import (
    duplicate_sends_finding,
    owed_emails_finding,
    single_scheduler_finding,
    stale_claims_finding,
)
from musicbutler_pipeline.domain.sends import STALE_AFTER
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.resources import WarehouseResource


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
    return owed_emails_finding(warehouse, date.fromisoformat(context.partition_key))


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
    return stale_claims_finding(warehouse)


@_daily_check(
    description="No subscriber has two sends for one day, nor one release group in two emails.",
)
def no_duplicate_sends(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    return duplicate_sends_finding(warehouse)


@_daily_check(
    description=(
        "One scheduler daemon on the instance. Also reported by `duplicate_scheduler_sensor` "
        "the moment it sees a second one."
    ),
)
def single_scheduler(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    return single_scheduler_finding(warehouse)


daily_checks = [every_owed_email_sent, no_stale_claims, no_duplicate_sends, single_scheduler]

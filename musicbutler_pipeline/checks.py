"""Asset checks: what the operator must see when the day went wrong."""

import warnings
from datetime import date

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
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


def _every_owed_email_sent(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    return owed_emails_finding(warehouse, date.fromisoformat(context.partition_key))


# Dagster 1.13 records a check without partitions_def once per run, whichever partition ran: a
# failed day shows green again as soon as any other day passes. With partitions_def the result is
# kept per partition (shown per day in the UI, and the sensor can fail a day's check). Dagster
# marks that preview; its warning is silenced here only, so commands keep a one-line stderr.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)
    every_owed_email_sent = asset_check(
        asset=drop_notifications,
        name="every_owed_email_sent",
        partitions_def=daily_partitions,
        description=(
            "Every subscribed subscriber with drops on this partition's day has a sent email. A "
            "permanent failure (a rejected address) is a warning; anything else (failed "
            "temporarily, outcome unknown, claimed without outcome, never attempted) an error."
        ),
    )(_every_owed_email_sent)


@asset_check(
    asset=drop_notifications,
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


@asset_check(
    asset=drop_notifications,
    description="No subscriber has two sends for one day, nor one release group in two emails.",
)
def no_duplicate_sends(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    return duplicate_sends_finding(warehouse)


@asset_check(
    asset=drop_notifications,
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

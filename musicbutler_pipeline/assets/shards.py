"""``drop_notifications`` as a graph, for ``MUSICBUTLER_SEND_SHARDS`` > 1: the day's subscribers
sent as a few coarse shards, each its own step, so a distributed executor (dagster-celery) runs them
on different workers.

    plan_send_shards -> send_shard (one dynamic step per shard) -> collect_send_shards

Same asset key, partitions, checks and metadata as the one-step asset; ``collect_send_shards``
produces the partition's one materialization with the shards' counts summed (or, on a re-run that
sent nothing new, an observation, as the one-step asset does). Each shard takes its own send lock
(day, shard): the day's shards run in parallel, two senders of one shard do not. The ledger, not
the executor, keeps every subscriber to one email: pools are not relied on (docs/scaling.md).
"""

from collections.abc import Iterator
from dataclasses import fields
from datetime import date

from dagster import (
    AssetCheckEvaluation,
    AssetIn,
    AssetOut,
    DynamicOut,
    DynamicOutput,
    Failure,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    graph_multi_asset,
    op,
)

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.links import listen_links
from musicbutler_pipeline.assets.metadata import column_schema
from musicbutler_pipeline.assets.notifications import (
    Notified,
    conclude_day,
    drop_notifications,
    evaluate_planned_checks,
    stale_day_refusal,
)
from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.locks import send_lock
from musicbutler_pipeline.partitions import daily_partitions
from musicbutler_pipeline.processes import current_sender, sender_gone
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.notifier import NotifyReport, send_digests
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.schema import sends

_COUNTS = tuple(
    item.name
    for item in fields(NotifyReport)
    if item.name not in ("partition_date", "failures", "locked_by")
)


def _day(context: OpExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@op(
    description=(
        "Refuses a day older than MUSICBUTLER_MAX_SEND_AGE_DAYS (unless the run allows it), then "
        "yields one shard per MUSICBUTLER_SEND_SHARDS (subscriber id modulo the count)."
    ),
    ins={"user_drops": In(Nothing), "listen_links": In(Nothing)},
    out=DynamicOut(Shard),
)
def plan_send_shards(
    context: OpExecutionContext, warehouse: WarehouseResource, mailer: MailerResource
) -> Iterator[DynamicOutput[Shard] | AssetCheckEvaluation]:
    settings = mailer.environment()
    refusal = stale_day_refusal(context, _day(context), settings.max_send_age_days)
    if refusal is not None:
        yield from evaluate_planned_checks(context, warehouse)
        raise Failure(
            description=refusal,
            metadata={"refused": f"older than {settings.max_send_age_days} days"},
            allow_retries=False,
        )
    count = settings.execution.send_shards
    context.log.info("%s: sending in %d shards", _day(context), count)
    for shard in Shard.all(count):
        yield DynamicOutput(shard, mapping_key=f"shard_{shard.key}")


@op(
    description=(
        "Sends one shard's digests under the (day, shard) send lock; the ledger keeps every "
        "subscriber to one email across shards, workers and re-runs."
    ),
    # No pool: the day's shards are meant to run at once, and the (day, shard) send lock keeps
    # two senders off one shard whatever the executor does with pools (docs/scaling.md).
    tags={"musicbutler/side-effect": "email"},
)
def send_shard(
    context: OpExecutionContext,
    warehouse: WarehouseResource,
    mailer: MailerResource,
    shard: Shard,
) -> NotifyReport:
    day = _day(context)
    ledger = SendLedger(
        warehouse.engine, current_sender(context.run.run_id), sender_gone=sender_gone
    )
    transport = mailer.open()
    context.log.info("sending %s shard %s through %s", day, shard.key, transport.description)
    return send_digests(
        warehouse.engine,
        day,
        mailer=transport,
        ledger=ledger,
        identity=mailer.identity(),
        lock=send_lock(warehouse.resolved_url(), day, shard),
        shard=shard,
    )


def merge_reports(day: date, reports: list[NotifyReport]) -> NotifyReport:
    """The shards' reports as one: counts summed, failures concatenated, and the shards that
    another process was sending named together."""
    total = NotifyReport(day)
    for report in reports:
        for name in _COUNTS:
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.failures.extend(report.failures)
    locked = [report.locked_by for report in reports if report.locked_by is not None]
    total.locked_by = "; ".join(locked) if locked else None
    return total


@op(
    description=(
        "Sums the shards' reports into the partition's one materialization (an observation on "
        "a re-run that sent nothing new), and e-mails the operator about what is owed."
    ),
    out=Out(Nothing, is_required=False),
)
def collect_send_shards(
    context: OpExecutionContext,
    warehouse: WarehouseResource,
    mailer: MailerResource,
    reports: list[NotifyReport],
) -> Iterator[Notified]:
    day = _day(context)
    report = merge_reports(day, reports)
    transport = mailer.open().description
    yield from conclude_day(context, warehouse, mailer, report, transport, as_output=True)


_spec = drop_notifications.specs_by_key[drop_notifications.key]


@graph_multi_asset(
    name="drop_notifications",
    partitions_def=daily_partitions,
    group_name="musicbutler",
    # The one-step asset's deps, as inputs that load nothing (tests/assets/test_send_shards.py).
    ins={
        "user_drops": AssetIn(key=user_drops.key, dagster_type=Nothing),
        "listen_links": AssetIn(key=listen_links.key, dagster_type=Nothing),
    },
    outs={
        "drop_notifications": AssetOut(
            key=drop_notifications.key,
            dagster_type=Nothing,
            is_required=False,
            description=_spec.description,
            code_version=_spec.code_version,
            kinds=set(_spec.kinds),
            owners=list(_spec.owners),
            metadata={"dagster/column_schema": column_schema(sends)},
        )
    },
)
def sharded_drop_notifications(user_drops, listen_links):  # noqa: ANN001, ANN201 (a graph's wiring)
    shards = plan_send_shards(user_drops=user_drops, listen_links=listen_links)
    reports = shards.map(send_shard).collect()
    return {"drop_notifications": collect_send_shards(reports)}

import json
import logging
from datetime import UTC, datetime

from dagster import (
    AssetCheckEvaluation,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from musicbutler_pipeline.checks import single_scheduler
from musicbutler_pipeline.domain.schedulers import DUPLICATE_SCHEDULER, heartbeat_ids_alternate
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import MailerResource, WarehouseResource
from musicbutler_pipeline.services.alerts import duplicate_scheduler_email
from musicbutler_pipeline.services.schedulers import scheduler_evidence
from musicbutler_pipeline.warehouse.monitoring import claim_alert

logger = logging.getLogger(__name__)

HISTORY = 12  # heartbeat owners remembered in the cursor


def build_duplicate_scheduler_sensor(minimum_interval_seconds: int = 30) -> SensorDefinition:
    """A sensor, on by default, that alerts when two scheduler daemons share the instance.

    It reports what the schedulers' own watch threads (sensors/presence.py) and `musicbutler
    daemon` recorded in the warehouse; its own heartbeat sampling, once per evaluation, is a
    last resort.
    """

    @sensor(
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Alerts (ERROR log, failed `{single_scheduler.check_key.name}` check, e-mail to "
            "MUSICBUTLER_OPERATOR_EMAIL at most once an hour) when two scheduler daemons run on "
            "one instance: each would fire every schedule tick."
        ),
    )
    def duplicate_scheduler_sensor(
        context: SensorEvaluationContext, warehouse: WarehouseResource, mailer: MailerResource
    ) -> SensorResult:
        now = datetime.now(UTC)
        engine = warehouse.engine
        evidence = scheduler_evidence(engine, now=now)

        cursor = json.loads(context.cursor) if context.cursor else {}
        owners: list[str] = cursor.get("heartbeat_owners", [])
        heartbeat = context.instance.get_daemon_heartbeats().get("SCHEDULER")
        if heartbeat is not None and (not owners or owners[-1] != heartbeat.daemon_id):
            owners = [*owners, heartbeat.daemon_id][-HISTORY:]
        alternating = heartbeat_ids_alternate(owners)

        problem = evidence.problem
        if problem is None and alternating:
            problem = (
                "the SCHEDULER heartbeat keeps changing hands between daemon ids "
                f"{', '.join(sorted(set(owners)))}: more than one scheduler daemon is running"
            )
        was_failing = cursor.get("failing", False)
        events = []
        if problem:
            context.log.error("DUPLICATE SCHEDULER: %s", problem)
            if claim_alert(engine, DUPLICATE_SCHEDULER, problem, now=now):
                email_operator(mailer, problem, now)
        if problem or was_failing:
            events.append(
                AssetCheckEvaluation(
                    asset_key=single_scheduler.check_key.asset_key,
                    check_name=single_scheduler.check_key.name,
                    passed=problem is None,
                    metadata={"finding": problem or "one scheduler again"},
                    # The check is kept per day (checks.py): the finding belongs to today's.
                    partition=latest_partition_day(now).isoformat(),
                )
            )
        new_cursor = {"heartbeat_owners": owners, "failing": problem is not None}
        return SensorResult(cursor=json.dumps(new_cursor), asset_events=events)

    return duplicate_scheduler_sensor


def email_operator(mailer: MailerResource, problem: str, now: datetime) -> None:
    settings = mailer.environment()
    if not settings.operator_email:
        logger.warning("MUSICBUTLER_OPERATOR_EMAIL is not set: the operator gets no e-mail")
        return
    message = duplicate_scheduler_email(
        problem,
        mail_from=mailer.sender(),
        to=settings.operator_email,
        now=now,
    )
    with mailer.open() as transport:
        transport.send(message)

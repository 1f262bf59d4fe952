"""Asset checks are evaluated and recorded per partition: one result per check per run, for the
run's day, as the instance's check-evaluation records (what the UI reads) show."""

from pathlib import Path

from dagster import DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from sqlalchemy import Engine

from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.runner import run_day
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers


def test_each_check_has_one_result_per_run_for_its_partition(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    definitions = build_definitions(
        warehouse=WarehouseResource(url=sqlite_engine.url.render_as_string(hide_password=False)),
        release_source=SnapshotReleaseSource(),
        mailer=MailerResource(url=(tmp_path / "outbox").as_uri()),
        library_source=CsvOnlyLibrarySource(),
        schedules=[],
        sensors=[],
    )
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        runs = [
            run_day(SAMPLE_DAY, definitions=definitions, instance=instance, allow_old=True)
            for _ in range(2)
        ]
        assert all(run.success for run in runs)
        for check in daily_checks:
            key = check.check_key
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
            assert [(record.partition, record.status) for record in history] == [
                (SAMPLE_DAY.isoformat(), AssetCheckExecutionRecordStatus.SUCCEEDED)
            ] * 2, key.name
            assert {record.run_id for record in history} == {run.run_id for run in runs}
            latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])
            assert latest[key].partition == SAMPLE_DAY.isoformat()

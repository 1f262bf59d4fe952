"""The daily prune in the Dagster layer: a job on a schedule that is on by default, whose run
shows the rows deleted per table."""

from datetime import timedelta

import pytest
from dagster import DefaultScheduleStatus
from sqlalchemy import func, select

from musicbutler_pipeline.definitions import build_definitions, defs
from musicbutler_pipeline.partitions import latest_partition_day
from musicbutler_pipeline.resources import WarehouseResource
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.schema import drops
from tests.builders import add_subscriber, mbid
from tests.clock import pin_today


def test_the_prune_schedule_runs_daily_at_0405_utc_and_is_on() -> None:
    schedule = defs.resolve_schedule_def("prune_warehouse_schedule")
    assert schedule.job_name == "prune_warehouse_job"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("5 4 * * *", "UTC")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING


def test_a_prune_run_deletes_old_drops_and_reports_the_counts(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSICBUTLER_KEEP_DROPS_DAYS", "10")
    engine = make_engine(sqlite_url)
    upgrade(engine)
    ana = add_subscriber(engine, "ana@example.com")
    today = latest_partition_day()
    pin_today(monkeypatch, today)  # the op reads today itself
    with engine.begin() as connection:
        connection.execute(
            drops.insert(),
            [
                {
                    "partition_date": today - timedelta(days=age),
                    "subscriber_id": ana,
                    "release_group_mbid": mbid(f"rg:{age}"),
                    "artist_mbid": mbid("artist"),
                    "artist_name": "Artist",
                }
                for age in (11, 10, 0)
            ],
        )
    job = build_definitions(warehouse=WarehouseResource(url=sqlite_url)).resolve_job_def(
        "prune_warehouse_job"
    )
    result = job.execute_in_process()
    assert result.success
    [output] = [event for event in result.all_node_events if event.is_successful_output]
    metadata = {key: value.value for key, value in output.step_output_data.metadata.items()}
    assert metadata["drops_deleted"] == 1
    assert metadata["source_pages_deleted"] == 0
    assert metadata["drops_kept_from"] == (today - timedelta(days=10)).isoformat()
    assert metadata["rows_deleted"] == 1
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(drops)).scalar_one() == 2
    engine.dispose()

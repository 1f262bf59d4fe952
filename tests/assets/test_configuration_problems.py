"""What each resource needs before a run can work, asked in one place before a run starts
(`run`, `demo`, `doctor`), and raised by a run the UI or the schedule launched at its first step."""

from pathlib import Path

import pytest
from dagster import DagsterInstance
from sqlalchemy import Engine

from musicbutler_pipeline.definitions import build_definitions, defs
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.jobs import daily_drops_job
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.resources.readiness import configuration_problems
from musicbutler_pipeline.runner import run_day
from musicbutler_pipeline.settings import NotConfigured

CONTACT_MISSING = "MUSICBUTLER_CONTACT: required to call MusicBrainz"


def _problems() -> list[str]:
    return [str(problem) for problem in configuration_problems(defs.resources)]


def test_live_musicbrainz_needs_a_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = _problems()
    assert problem.startswith(CONTACT_MISSING)
    monkeypatch.setenv("MUSICBUTLER_CONTACT", "ops@example.org")
    assert _problems() == []


def test_recorded_pages_need_their_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MUSICBUTLER_MUSICBRAINZ_URL", (SAMPLE_DIR / "musicbrainz").as_uri())
    assert _problems() == []
    monkeypatch.setenv("MUSICBUTLER_MUSICBRAINZ_URL", (tmp_path / "nowhere").as_uri())
    assert _problems() == ["MUSICBUTLER_MUSICBRAINZ_URL: file:// names no folder of recorded pages"]


def test_an_unusable_signing_key_and_a_malformed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICBUTLER_CONTACT", "ops@example.org")
    monkeypatch.setenv("MUSICBUTLER_SECRET_KEY", "short")
    assert _problems() == ["MUSICBUTLER_SECRET_KEY: must be at least 16 characters long"]
    monkeypatch.setenv("MUSICBUTLER_MUSICBRAINZ_RATE", "0")
    assert _problems() == ["MUSICBUTLER_MUSICBRAINZ_RATE: must be greater than 0, got '0'"]


def test_run_day_refuses_before_the_instance_records_a_run(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    definitions = build_definitions(
        warehouse=WarehouseResource(url=sqlite_engine.url.render_as_string(hide_password=False)),
        library_source=CsvOnlyLibrarySource(),
        schedules=[],
        sensors=[],
    )
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        with pytest.raises(NotConfigured) as refused:
            run_day(SAMPLE_DAY, definitions=definitions, instance=instance)
        assert [p.variable for p in refused.value.problems] == ["MUSICBUTLER_CONTACT"]
        assert instance.get_run_records() == []
        # The demo's own sources need nothing from the environment.
        demo = build_definitions(
            warehouse=WarehouseResource(
                url=sqlite_engine.url.render_as_string(hide_password=False)
            ),
            release_source=SnapshotReleaseSource(),
            library_source=CsvOnlyLibrarySource(),
            schedules=[],
            sensors=[],
        )
        assert configuration_problems(demo.resources or {}) == []


def test_a_run_launched_elsewhere_fails_its_musicbrainz_step_in_one_line(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """As from the UI or the schedule, which do not go through `musicbutler run`."""
    definitions = build_definitions(
        warehouse=WarehouseResource(url=sqlite_engine.url.render_as_string(hide_password=False)),
        library_source=CsvOnlyLibrarySource(),
        schedules=[],
        sensors=[],
    )
    job = definitions.resolve_job_def(daily_drops_job.name)
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = job.execute_in_process(
            partition_key=SAMPLE_DAY.isoformat(), instance=instance, raise_on_error=False
        )
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "artist_releases"
    error = failure.step_failure_data.error
    assert error is not None
    assert (
        error.message.strip().splitlines() == [error.message.strip().splitlines()[0]]
        and CONTACT_MISSING in error.message
    )

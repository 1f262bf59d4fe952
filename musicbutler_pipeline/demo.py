"""The bundled sample day, end to end on the embedded default (`musicbutler demo`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.resources import CsvOnlyLibrarySource, SnapshotReleaseSource
from musicbutler_pipeline.runner import RunSummary, dagster_instance, run_day
from musicbutler_pipeline.settings import LISTENBRAINZ_OFF, Settings
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.imports import ImportReport, import_library, import_subscribers
from musicbutler_pipeline.warehouse.migrate import upgrade

SAMPLE_DAY = date(2026, 11, 23)
SAMPLE_DIR = Path(__file__).parent / "sources" / "data" / "sample"


@dataclass(frozen=True)
class DemoResult:
    subscribers: ImportReport
    library: ImportReport
    run: RunSummary


def run_demo(settings: Settings) -> DemoResult:
    settings.ensure_home()
    engine = make_engine(settings.warehouse_url)
    try:
        upgrade(engine)
        subscribers = import_subscribers(engine, SAMPLE_DIR / "subscribers.csv")
        library = import_library(engine, SAMPLE_DIR / "library.csv")
    finally:
        engine.dispose()
    definitions = build_definitions(
        release_source=SnapshotReleaseSource(), library_source=CsvOnlyLibrarySource()
    )
    # The sample is a fixed past day: the demo sends it whatever its age.
    run = run_day(
        SAMPLE_DAY, definitions=definitions, instance=dagster_instance(settings), allow_old=True
    )
    return DemoResult(subscribers, library, run)


def offline_environment(settings: Settings) -> str:
    """The variables that make `musicbutler run` and the UI's runs work like the demo, offline:
    the recorded MusicBrainz pages, no ListenBrainz, this demo's home."""
    return (
        f"MUSICBUTLER_HOME={settings.home} "
        f"MUSICBUTLER_MUSICBRAINZ_URL={bundled_snapshot_root().as_uri()} "
        f"MUSICBUTLER_LISTENBRAINZ_URL={LISTENBRAINZ_OFF}"
    )


def ui_command(settings: Settings) -> str:
    """How to open the UI on the same instance, with the sample day's recorded MusicBrainz."""
    return f"{offline_environment(settings)} .venv/bin/musicbutler ui"


def run_command(settings: Settings) -> str:
    """`musicbutler run` for the sample day, offline, as the demo ran it."""
    return (
        f"{offline_environment(settings)} .venv/bin/musicbutler run --date {SAMPLE_DAY} --allow-old"
    )

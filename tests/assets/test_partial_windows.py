"""artist_releases never stores a partial window as if it were complete (issue 10, finding 5):
``dagster.materialize`` on SQLite and PostgreSQL against a MusicBrainz server on loopback whose
page at offset 100 is not a search result page."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.resources import MusicBrainzReleaseSource
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.schema import drops, release_groups, sends, source_pages
from tests.assets.test_artist_releases import run
from tests.fixtures.loopback import LoopbackServer, Reply, at_offset, musicbrainz_replay, scripted

pytest_plugins = ["tests.fixtures.http_server"]

BAD_PAGES = {
    "count true": (
        Reply.json({"count": True, "offset": 100, "release-groups": []}),
        "count is true, not a number of results",
    ),
    "empty page": (
        Reply.json({"count": 230, "offset": 100, "release-groups": []}),
        "no release groups at offset 100 of 230",
    ),
}


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (source_pages, release_groups, drops, sends)
        }


@pytest.mark.postgres
@pytest.mark.parametrize("bad", BAD_PAGES, ids=list(BAD_PAGES))
def test_a_page_that_stays_bad_fails_the_day_and_stores_nothing(
    engine: Engine, http_server: LoopbackServer, tmp_path, bad: str
) -> None:
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    reply, problem = BAD_PAGES[bad]
    http_server.handler = scripted(
        musicbrainz_replay(bundled_snapshot_root()), at_offset(100), [reply] * 100
    )
    # Shorter waits through the resource's own settings (the CLI drill runs at the defaults).
    source = MusicBrainzReleaseSource(
        url=f"{http_server.url}/ws/2",
        contact="test@example.org",
        rate=1000,
        max_attempts=3,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
    with DagsterInstance.ephemeral() as instance:
        result = run(engine, SAMPLE_DAY, source, tmp_path / "outbox", instance)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "artist_releases"
    message = str(failure.step_failure_data.error)
    assert "offset=100" in message and f"{problem} after 3 attempt(s)" in message, message
    assert counts(engine) == {"source_pages": 0, "release_groups": 0, "drops": 0, "sends": 0}
    assert not list((tmp_path / "outbox").glob("*.eml"))


@pytest.mark.postgres
def test_a_page_bad_once_is_retried_and_the_day_is_whole(
    engine: Engine, http_server: LoopbackServer, tmp_path
) -> None:
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    reply, _ = BAD_PAGES["empty page"]
    http_server.handler = scripted(
        musicbrainz_replay(bundled_snapshot_root()), at_offset(100), [reply]
    )
    source = MusicBrainzReleaseSource(
        url=f"{http_server.url}/ws/2",
        contact="test@example.org",
        rate=1000,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
    with DagsterInstance.ephemeral() as instance:
        result = run(engine, SAMPLE_DAY, source, tmp_path / "outbox", instance)
    assert result.success
    # The search's 3 pages, and listen_links' one url-rels page per owed release group (26).
    assert counts(engine)["source_pages"] == 3 + 26
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 38

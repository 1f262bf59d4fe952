"""The listen_links asset in the daily run, against MusicBrainz replayed over real HTTP: only the
owed release groups are looked up (counted at the server), the digests carry the links, reruns
are idempotent, and an outage costs the links, never the day. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from sqlalchemy import Engine, func, select

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    MusicBrainzReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from musicbutler_pipeline.sources.musicbrainz_links import LINKS_SOURCE_NAME
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.pages import stored_source_pages
from musicbutler_pipeline.warehouse.schema import drops, release_group_links
from tests.fixtures.loopback import LoopbackServer, Reply, musicbrainz_replay, scripted

pytest_plugins = ["tests.fixtures.http_server"]

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
GROUP = "01c53a7a-6906-59b7-9018-1f4060022bc3"  # "The Archer's Almanac" (Taylor Swift)
SPOTIFY = "https://open.spotify.com/album/2fojyOcn96FkDOqKJl25OJ"


@pytest.fixture
def warehouse(engine: Engine) -> Engine:
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    return engine


def run(
    engine: Engine,
    server: LoopbackServer,
    outbox: Path,
    instance: DagsterInstance,
    *,
    refresh_links: bool = False,
):
    source = MusicBrainzReleaseSource(
        url=f"{server.url}/ws/2",
        contact="test@example.org",
        rate=1000,
        max_attempts=2,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
    return materialize(
        daily_assets,
        partition_key=SAMPLE_DAY.isoformat(),
        instance=instance,
        tags={ALLOW_OLD_SEND_TAG: "true"},
        run_config={"ops": {"listen_links": {"config": {"refresh": True}}}}
        if refresh_links
        else None,
        resources={
            "warehouse": WarehouseResource(url=engine.url.render_as_string(hide_password=False)),
            "release_source": source,
            "mailer": MailerResource(url=outbox.as_uri(), mail_from="Butler <butler@example.org>"),
            "library_source": CsvOnlyLibrarySource(),
        },
    )


def metadata(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def text_parts(outbox: Path) -> list[str]:
    messages: list[EmailMessage] = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]
    return [message.get_body(("plain",)).get_content() for message in messages]  # type: ignore[union-attr]


def link_rows(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(
                    release_group_links.c.release_group_mbid,
                    release_group_links.c.service,
                    release_group_links.c.url,
                ).order_by(release_group_links.c.release_group_mbid, release_group_links.c.service)
            )
        ]


def test_only_owed_release_groups_are_looked_up_and_digests_show_their_links(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    http_server.handler = musicbrainz_replay(bundled_snapshot_root())
    outbox = tmp_path / "outbox"
    with DagsterInstance.ephemeral() as instance:
        result = run(warehouse, http_server, outbox, instance)
    assert result.success

    with warehouse.connect() as connection:
        owed = set(
            connection.execute(
                select(drops.c.release_group_mbid).where(drops.c.partition_date == SAMPLE_DAY)
            ).scalars()
        )
    looked_up = [request.query["release-group"] for request in http_server.requests_to("/release")]
    # One request per owed release group, none for the 24 of the day that nobody follows.
    assert sorted(looked_up) == sorted(owed) == sorted(EXPECTED["pool_release_groups_on_day"])
    assert len(EXPECTED["exact_date_release_groups"]) == 50
    assert len(http_server.requests_to("/release-group")) == 3  # the search, as before

    links = metadata(result, "listen_links")
    assert links["release_groups_owed"] == 26
    assert links["requests"] == links["pages_stored"] == links["responses_with_retries"] == 26
    assert links["release_groups_with_links"] == 22
    assert links["links"] == len(link_rows(warehouse)) == 68
    assert links["lookups_failed"] == 0
    assert links["releases_skipped_malformed"] == 1

    texts = text_parts(outbox)
    assert len(texts) == EXPECTED["emails_expected"]
    with_group = [text for text in texts if f"release-group/{GROUP}" in text]
    assert with_group and all(f"  Listen: Spotify {SPOTIFY}, Apple Music " in t for t in with_group)
    # A release group with no known link keeps its MusicBrainz link and gets no Listen line.
    linked = {mbid for mbid, _service, _url in link_rows(warehouse)}
    [bare, *_] = sorted(owed - linked)
    lines = next(text for text in texts if f"release-group/{bare}" in text).splitlines()
    at = lines.index(f"  https://musicbrainz.org/release-group/{bare}")
    assert not lines[at + 1].startswith("  Listen:")


def test_reruns_are_idempotent_and_an_outage_keeps_the_links_and_the_day(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    replay = musicbrainz_replay(bundled_snapshot_root())
    http_server.handler = replay
    with DagsterInstance.ephemeral() as instance:
        assert run(warehouse, http_server, tmp_path / "first", instance).success
        first = link_rows(warehouse)
        assert run(warehouse, http_server, tmp_path / "again", instance, refresh_links=True).success
        assert link_rows(warehouse) == first  # replaced, not duplicated
        # MusicBrainz's url-rels lookups down during a refresh: the run still succeeds, the
        # links stay.
        http_server.handler = scripted(
            replay, lambda request: request.path.endswith("/release"), [Reply(503)] * 1000
        )
        before = len(http_server.requests_to("/release"))
        outage = run(warehouse, http_server, tmp_path / "outage", instance, refresh_links=True)
    assert outage.success
    links = metadata(outage, "listen_links")
    assert (links["lookups_failed"], links["lookups_not_tried"], links["requests"]) == (3, 23, 0)
    assert links["responses_with_retries"] == 3 * 2
    assert len(http_server.requests_to("/release")) - before == 3 * 2  # 3 groups x 2 attempts
    assert link_rows(warehouse) == first


def test_a_rerun_reuses_the_days_lookups_and_asks_musicbrainz_nothing_for_them(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    http_server.handler = musicbrainz_replay(bundled_snapshot_root())
    with DagsterInstance.ephemeral() as instance:
        assert run(warehouse, http_server, tmp_path / "first", instance).success
        first = link_rows(warehouse)
        with warehouse.connect() as connection:
            first_pages = stored_source_pages(connection, SAMPLE_DAY, LINKS_SOURCE_NAME)
        before = len(http_server.requests_to("/release"))
        rerun = run(warehouse, http_server, tmp_path / "again", instance)
    assert rerun.success
    assert len(http_server.requests_to("/release")) == before  # not one lookup
    links = metadata(rerun, "listen_links")
    assert (links["release_groups_reused"], links["release_groups_looked_up"]) == (26, 0)
    assert (links["requests"], links["links_written"]) == (0, 0)
    assert (links["links"], links["release_groups_with_links"], links["pages_stored"]) == (
        68,
        22,
        26,
    )
    assert link_rows(warehouse) == first
    with warehouse.connect() as connection:
        assert stored_source_pages(connection, SAMPLE_DAY, LINKS_SOURCE_NAME) == first_pages


def test_a_lookup_that_failed_is_tried_again_on_the_rerun(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    replay = musicbrainz_replay(bundled_snapshot_root())
    http_server.handler = scripted(
        replay, lambda request: request.path.endswith("/release"), [Reply(503)] * 2
    )
    with DagsterInstance.ephemeral() as instance:
        first = run(warehouse, http_server, tmp_path / "first", instance)
        assert metadata(first, "listen_links")["lookups_failed"] == 1
        before = len(http_server.requests_to("/release"))
        rerun = run(warehouse, http_server, tmp_path / "again", instance)
    links = metadata(rerun, "listen_links")
    assert (links["release_groups_reused"], links["release_groups_looked_up"]) == (25, 1)
    assert links["requests"] == len(http_server.requests_to("/release")) - before == 1
    assert links["release_groups_with_links"] == 22


def test_an_outage_on_the_first_run_still_sends_every_digest(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    http_server.handler = scripted(
        musicbrainz_replay(bundled_snapshot_root()),
        lambda request: request.path.endswith("/release"),
        [Reply(503)] * 1000,
    )
    outbox = tmp_path / "outbox"
    with DagsterInstance.ephemeral() as instance:
        result = run(warehouse, http_server, outbox, instance)
    assert result.success
    assert metadata(result, "drop_notifications")["sent"] == EXPECTED["emails_expected"]
    texts = text_parts(outbox)
    assert len(texts) == EXPECTED["emails_expected"]
    assert not any("Listen:" in text for text in texts)
    assert all("https://musicbrainz.org/release-group/" in text for text in texts)
    with warehouse.connect() as connection:
        count = connection.execute(select(func.count()).select_from(release_group_links))
        assert count.scalar_one() == 0

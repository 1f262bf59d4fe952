"""artist_releases with a lookback window, materialized with dagster.materialize on SQLite.

The story: "Quiet Harbour" (followed by oliver.bennett) came out on 2026-11-22 but was entered in
MusicBrainz only after that day's run. The 11-23 run sees it in its window and announces it;
nothing announces it again, whichever day runs or re-runs afterwards.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from email import message_from_bytes, policy
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
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.sources.musicbrainz import SOURCE_NAME, bundled_snapshot_root
from musicbutler_pipeline.sources.musicbrainz_links import LINKS_SOURCE_NAME
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    release_groups,
    source_pages,
    subscribers,
)
from tests.builders import dated, load_source_pages, rederive
from tests.fixtures.loopback import LoopbackServer, Reply, at_offset, musicbrainz_replay, scripted

pytest_plugins = ["tests.fixtures.http_server"]

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
SAMPLE_PAGES = sorted((bundled_snapshot_root() / SAMPLE_DAY.isoformat()).glob("offset-*.json"))
OLIVER = "oliver.bennett@example.com"
NOV = {day: date(2026, 11, day) for day in (22, 23, 24)}


def sample_records() -> list[dict]:
    return [r for path in SAMPLE_PAGES for r in json.loads(path.read_bytes())["release-groups"]]


LATE = next(r for r in sample_records() if r["title"] == "Quiet Harbour")


def record_snapshot(root: Path, end: date, records: list[dict]) -> None:
    """Pages of 100 as MusicBrainz would answer the window ending on ``end``."""
    directory = root / end.isoformat()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("offset-*.json"):
        old.unlink()
    for offset in range(0, max(len(records), 1), 100):
        page = {
            "count": len(records),
            "offset": offset,
            "release-groups": records[offset : offset + 100],
        }
        (directory / f"offset-{offset:04d}.json").write_text(json.dumps(page))


def visible_on(end: date, *, late_entered: bool) -> list[dict]:
    """The sample records a search ending on ``end`` returns; the late one only once entered."""
    return [
        r
        for r in sample_records()
        if not (
            len(r.get("first-release-date") or "") == 10
            and r["first-release-date"] > end.isoformat()
        )
        and (late_entered or r.get("id") != LATE["id"])
    ]


@pytest.fixture
def warehouse(sqlite_engine: Engine) -> Engine:
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    return sqlite_engine


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    root = tmp_path / "musicbrainz"
    record_snapshot(root, NOV[22], visible_on(NOV[22], late_entered=False))
    record_snapshot(root, NOV[23], visible_on(NOV[23], late_entered=True))
    record_snapshot(root, NOV[24], visible_on(NOV[24], late_entered=True))
    return root


def run(engine: Engine, day: date, release_source: object, outbox: Path, instance: DagsterInstance):
    return materialize(
        daily_assets,
        partition_key=day.isoformat(),
        instance=instance,
        tags={ALLOW_OLD_SEND_TAG: "true"},  # the recorded days are in the past
        resources={
            "warehouse": WarehouseResource(url=engine.url.render_as_string(hide_password=False)),
            "release_source": release_source,
            "library_source": CsvOnlyLibrarySource(),
            "mailer": MailerResource(url=outbox.as_uri(), mail_from="Butler <butler@example.org>"),
        },
        raise_on_error=False,
    )


def metadata(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def emails_to(outbox: Path, recipient: str) -> list[str]:
    """Subjects of the messages written to ``recipient``."""
    subjects = []
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"].addresses[0].addr_spec == recipient:
            subjects.append(str(message["Subject"]))
    return subjects


def text_to(outbox: Path, recipient: str) -> str:
    """The plain-text part of the one message written to ``recipient``, whitespace collapsed."""
    [message] = [
        message
        for path in sorted(outbox.glob("*.eml"))
        if (message := message_from_bytes(path.read_bytes(), policy=policy.default))["To"]
        .addresses[0]
        .addr_spec
        == recipient
    ]
    body = message.get_body(("plain",))
    assert body is not None
    return " ".join(body.get_content().split())


def owner(engine: Engine, mbid: str) -> date | None:
    with engine.connect() as connection:
        return connection.execute(
            select(release_groups.c.partition_date).where(release_groups.c.mbid == mbid)
        ).scalar_one_or_none()


def announced(engine: Engine, mbid: str) -> list[tuple[str, date]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(subscribers.c.email, announcements.c.partition_date)
            .join(subscribers, subscribers.c.id == announcements.c.subscriber_id)
            .where(announcements.c.release_group_mbid == mbid)
        ).all()
    return [(email, day) for email, day in rows]


def test_a_late_entry_is_announced_once_by_the_first_partition_that_sees_it(
    warehouse: Engine, snapshots: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    source = SnapshotReleaseSource(root=str(snapshots), lookback_days=14)
    with DagsterInstance.ephemeral() as instance:
        first = run(warehouse, NOV[22], source, outbox, instance)
        assert first.success
        # The first partition ever fetched starts the watch: no back catalogue is announced.
        releases = metadata(first, "artist_releases")
        assert releases["release_groups_added_late"] == 0
        assert releases["release_groups_before_watch_start"] > 0
        assert owner(warehouse, LATE["id"]) is None
        assert emails_to(outbox, OLIVER) == []

        second = run(warehouse, NOV[23], source, outbox, instance)
        assert second.success
        releases = metadata(second, "artist_releases")
        assert releases["release_groups_dated_on_day"] == len(EXPECTED["exact_date_release_groups"])
        assert releases["release_groups_added_late"] == 1  # Quiet Harbour, and only it
        assert releases["release_groups_owned_by_earlier_partitions"] > 0
        assert owner(warehouse, LATE["id"]) == NOV[23]
        assert emails_to(outbox, OLIVER) == ["New Music for November 23, 2026"]
        # Its own day (11-22) was fetched without it: the digest says it was entered late
        # rather than that it came out on the 23rd.
        assert (
            "1 release from the artist you follow was added to MusicBrainz late: it came out"
            " on November 22." in text_to(outbox, OLIVER)
        )
        announced_first = announced(warehouse, LATE["id"])
        assert (OLIVER, NOV[23]) in announced_first
        assert {day for _, day in announced_first} == {NOV[23]}

        assert run(warehouse, NOV[23], source, outbox, instance).success  # re-run: idempotent
        assert owner(warehouse, LATE["id"]) == NOV[23]
        assert run(warehouse, NOV[24], source, outbox, instance).success  # still in the window
        assert owner(warehouse, LATE["id"]) == NOV[23]

        # 11-22 re-run after the entry: the release group moves to its earliest partition,
        # and the announce-once rule keeps it from being sent again.
        record_snapshot(snapshots, NOV[22], visible_on(NOV[22], late_entered=True))
        rerun = run(warehouse, NOV[22], source, outbox, instance)
        assert rerun.success
        assert metadata(rerun, "artist_releases")["release_groups_moved_from_later_partitions"] == 1
        assert owner(warehouse, LATE["id"]) == NOV[22]

    assert emails_to(outbox, OLIVER) == ["New Music for November 23, 2026"]
    assert sorted(announced(warehouse, LATE["id"])) == sorted(announced_first)
    with warehouse.connect() as connection:
        oliver_drops = connection.execute(
            select(drops.c.partition_date, drops.c.release_group_mbid)
            .join(subscribers, subscribers.c.id == drops.c.subscriber_id)
            .where(subscribers.c.email == OLIVER)
        ).all()
        late_drops = connection.execute(
            select(drops.c.partition_date, func.count())
            .where(drops.c.release_group_mbid == LATE["id"])
            .group_by(drops.c.partition_date)
        ).all()
    assert oliver_drops == [(NOV[23], LATE["id"])]
    assert late_drops == [(NOV[23], len(announced_first))]


def test_lookback_zero_is_the_exact_day_only(
    warehouse: Engine, snapshots: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    source = SnapshotReleaseSource(root=str(snapshots), lookback_days=0)
    with DagsterInstance.ephemeral() as instance:
        for day in (NOV[22], NOV[23], NOV[24]):
            result = run(warehouse, day, source, outbox, instance)
            assert result.success
            releases = metadata(result, "artist_releases")
            assert releases["release_groups"] == releases["release_groups_dated_on_day"]
            assert releases["window_start"] == releases["window_end"] == day.isoformat()
    assert owner(warehouse, LATE["id"]) is None  # 11-22's run never saw it; nobody else looks
    assert emails_to(outbox, OLIVER) == []


def test_raw_pages_are_stored_per_partition_and_rederive_the_day(
    warehouse: Engine, tmp_path: Path
) -> None:
    with DagsterInstance.ephemeral() as instance:
        assert run(
            warehouse, SAMPLE_DAY, SnapshotReleaseSource(), tmp_path / "out", instance
        ).success
        assert run(
            warehouse, SAMPLE_DAY, SnapshotReleaseSource(), tmp_path / "out", instance
        ).success
    with warehouse.connect() as connection:
        stored = load_source_pages(connection, SAMPLE_DAY, SOURCE_NAME)
        owned = set(
            connection.execute(
                select(release_groups.c.mbid).where(release_groups.c.partition_date == SAMPLE_DAY)
            ).scalars()
        )
        rows = {
            row.source: row.pages
            for row in connection.execute(
                select(source_pages.c.source, func.count().label("pages")).group_by(
                    source_pages.c.source
                )
            )
        }
    # Replaced on the re-run, not duplicated: the search's 3 pages, and the listen_links asset's
    # one url-rels page per owed release group.
    assert rows == {SOURCE_NAME: 3, LINKS_SOURCE_NAME: len(EXPECTED["pool_release_groups_on_day"])}
    assert [page.body for page in stored] == [path.read_bytes() for path in SAMPLE_PAGES]
    assert [page.sha256 for page in stored] == [
        hashlib.sha256(path.read_bytes()).hexdigest() for path in SAMPLE_PAGES
    ]
    assert [(page.offset, page.record_count) for page in stored] == [
        (0, 100),
        (100, 100),
        (200, 30),
    ]
    assert all("firstreleasedate:[2026-11-09 TO 2026-11-23]" in page.query for page in stored)
    again = rederive(stored, SAMPLE_DAY, lookback_days=14)
    assert {group.mbid for group in dated(again, SAMPLE_DAY)} == owned


def test_a_page_that_keeps_failing_fails_the_asset_and_writes_nothing(
    warehouse: Engine, http_server: LoopbackServer, tmp_path: Path
) -> None:
    http_server.handler = musicbrainz_replay(bundled_snapshot_root())
    source = MusicBrainzReleaseSource(
        url=f"{http_server.url}/ws/2",
        contact="test@example.org",
        rate=1000,
        max_attempts=3,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
    outbox = tmp_path / "outbox"
    with DagsterInstance.ephemeral() as instance:
        assert run(warehouse, SAMPLE_DAY, source, outbox, instance).success
        before = table_contents(warehouse)
        http_server.handler = scripted(http_server.handler, at_offset(200), [Reply(503)] * 10)
        failed = run(warehouse, SAMPLE_DAY, source, outbox, instance)
    assert not failed.success
    [failure] = [event for event in failed.all_events if event.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert f"{http_server.url}/ws/2/release-group?" in message
    assert "offset=200" in message and "HTTP 503 after 3 attempt(s)" in message
    assert table_contents(warehouse) == before  # nothing half written
    assert len(http_server.requests_to("/release-group")) == 3 + 2 + 3


def table_contents(engine: Engine) -> tuple[list, list]:
    with engine.connect() as connection:
        groups = connection.execute(
            select(
                release_groups.c.mbid, release_groups.c.partition_date, release_groups.c.fetched_at
            ).order_by(release_groups.c.mbid)
        ).all()
        pages = connection.execute(
            select(
                source_pages.c.page_offset, source_pages.c.sha256, source_pages.c.fetched_at
            ).order_by(source_pages.c.page_offset)
        ).all()
    return groups, pages

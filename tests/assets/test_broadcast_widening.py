"""The MusicBrainz search asks for the primary types Broadcast and Other too exactly while some
subscriber who has not unsubscribed selects the release type broadcast. Over real HTTP: a
loopback server replays recorded pages of the narrow search (the bundled sample day) and of the
widened one (the sample's records plus tests/fixtures/musicbrainz/broadcasts-2026-11-23.json),
and records which search it was asked. Materialized on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from sqlalchemy import Engine, select

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.domain.preferences import parse_release_types
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    MusicBrainzReleaseSource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.sources.http import RateLimiter
from musicbutler_pipeline.sources.musicbrainz import (
    SOURCE_NAME,
    MusicBrainzClient,
    bundled_snapshot_root,
    search_query,
    window,
)
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.preferences import change_preferences, subscriber_id_for
from musicbutler_pipeline.warehouse.schema import (
    drop_exclusions,
    drops,
    release_groups,
    source_pages,
    subscribers,
)
from musicbutler_pipeline.warehouse.subscribers import unsubscribe_by_id
from tests.fixtures.loopback import FakeClock, LoopbackServer, musicbrainz_replay

pytest_plugins = ["tests.fixtures.http_server"]

FIXTURE = Path(__file__).parents[1] / "fixtures" / "musicbrainz" / "broadcasts-2026-11-23.json"
BROADCASTS: list[dict] = json.loads(FIXTURE.read_text())["release-groups"]
BY_TITLE = {record["title"]: record["id"] for record in BROADCASTS}
MAIDA_VALE = BY_TITLE["Live from Maida Vale"]  # Four Tet, primary type Broadcast
INTERVIEW = BY_TITLE["In Conversation with Four Tet"]  # primary Other, secondary Interview
AUDIOBOOK = BY_TITLE["Sagas Read Aloud"]  # Björk, primary Other, secondary Audiobook
BEFORE_WATCH = BY_TITLE["Radio 6 Residency"]  # 11-20: before the first partition ever fetched
ZOE = "zoe+music@example.org"  # follows Four Tet, not Björk
FOUR_TET = "3bcff06f-675a-451f-9075-99e8657047e8"
BJORK = "87c5dedd-371d-4a53-9f7f-80522fb7f3cb"
START, END = window(SAMPLE_DAY, 14)
NARROW = search_query(START, END)
WIDENED = search_query(START, END, widened=True)


def sample_records() -> list[dict]:
    pages = sorted((bundled_snapshot_root() / SAMPLE_DAY.isoformat()).glob("offset-*.json"))
    return [record for path in pages for record in json.loads(path.read_text())["release-groups"]]


def record_pages(directory: Path, records: list[dict]) -> None:
    """Pages of 100, as MusicBrainz answers a search that matches ``records``."""
    directory.mkdir(parents=True)
    for offset in range(0, len(records), 100):
        page = {"count": len(records), "offset": offset, "release-groups": records[offset:][:100]}
        (directory / f"offset-{offset:04d}.json").write_text(json.dumps(page))


def synthetic_broadcasts(count: int) -> list[dict]:
    """``count`` more podcasts of the day by an artist nobody follows."""
    artist = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "test:podcaster")), "name": "Podcaster"}
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"test:episode:{number}")),
            "title": f"Episode {number}",
            "primary-type": "Other",
            "first-release-date": SAMPLE_DAY.isoformat(),
            "artist-credit": [{"name": "Podcaster", "artist": artist}],
        }
        for number in range(count)
    ]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """The bundled recording (narrow search, listen-link pages) plus the widened search."""
    root = tmp_path / "musicbrainz"
    shutil.copytree(bundled_snapshot_root(), root)
    record_pages(root / "widened" / SAMPLE_DAY.isoformat(), sample_records() + BROADCASTS)
    return root


def _materialize(engine: Engine, release_source: object, tmp_path: Path):
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            daily_assets,
            selection=["artist_releases", "user_drops"],
            partition_key=SAMPLE_DAY.isoformat(),
            instance=instance,
            resources={
                "warehouse": WarehouseResource(
                    url=engine.url.render_as_string(hide_password=False)
                ),
                "release_source": release_source,
                "library_source": CsvOnlyLibrarySource(),
                "mailer": MailerResource(url=(tmp_path / "outbox").as_uri(), mail_from="b@x.org"),
            },
        )
    assert result.success
    [event] = result.asset_materializations_for_node("artist_releases")
    return {key: value.value for key, value in event.metadata.items()}


def _searches(server: LoopbackServer) -> list[str]:
    searches = [request.query["query"] for request in server.requests_to("/ws/2/release-group")]
    server.requests.clear()
    return searches


def _broadcasts_stored(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                select(release_groups.c.mbid).where(
                    release_groups.c.primary_type.in_(["Broadcast", "Other"])
                )
            ).scalars()
        )


def _by_email(engine: Engine, table) -> set[tuple]:
    with engine.connect() as connection:
        columns = [table.c.release_group_mbid, table.c.artist_mbid]
        if table is drop_exclusions:
            columns.append(drop_exclusions.c.reason)
        rows = connection.execute(
            select(subscribers.c.email, *columns)
            .join(subscribers, subscribers.c.id == table.c.subscriber_id)
            .where(table.c.release_group_mbid.in_([r["id"] for r in BROADCASTS]))
        )
        return {tuple(row) for row in rows}


def test_the_search_is_widened_exactly_while_someone_selects_broadcasts(
    engine: Engine, http_server: LoopbackServer, recorded: Path, tmp_path: Path
) -> None:
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    http_server.handler = musicbrainz_replay(recorded)
    source = MusicBrainzReleaseSource(
        url=f"{http_server.url}/ws/2", contact="test@example.org", rate=1000
    )

    # Nobody selects broadcasts: the narrow search, as before the release type existed.
    narrow = _materialize(engine, source, tmp_path)
    assert _searches(http_server) == [NARROW] * 3
    assert (narrow["query"], narrow["query_widened"], narrow["requests"]) == (NARROW, False, 3)
    assert narrow["subscribers_selecting_broadcast"] == 0
    assert narrow["query_widened_why"] == "narrow search: no subscriber selects broadcasts"
    assert _broadcasts_stored(engine) == set()

    # Zoë selects them: the same day again asks the widened search, and only that.
    change_preferences(engine, ZOE, release_types=parse_release_types("all"))
    widened = _materialize(engine, source, tmp_path)
    assert _searches(http_server) == [WIDENED] * 3  # 235 records: still three pages of 100
    assert (widened["query"], widened["query_widened"], widened["requests"]) == (WIDENED, True, 3)
    assert widened["subscribers_selecting_broadcast"] == 1
    assert "widened to broadcasts for 1 subscribers" in widened["query_widened_why"]
    with engine.connect() as connection:
        stored = connection.execute(
            select(source_pages.c.query).where(
                source_pages.c.partition_date == SAMPLE_DAY, source_pages.c.source == SOURCE_NAME
            )
        ).scalars()
        assert list(stored) == [WIDENED] * 3  # a re-derivation reads the widened pages as such
    # The partial date never counts; the 11-20 one predates the first partition ever fetched.
    assert _broadcasts_stored(engine) == {MAIDA_VALE, INTERVIEW, AUDIOBOOK}
    assert BEFORE_WATCH not in _broadcasts_stored(engine)
    # Zoë gets the Broadcast and the interview (she selected "other" too); everyone else who
    # follows Four Tet or Björk keeps the defaults, so theirs are type_filtered.
    assert _by_email(engine, drops) == {(ZOE, MAIDA_VALE, FOUR_TET), (ZOE, INTERVIEW, FOUR_TET)}
    exclusions = _by_email(engine, drop_exclusions)
    assert {reason for *_, reason in exclusions} == {"type_filtered"}
    assert ZOE not in {email for email, *_ in exclusions}
    four_tet_fans = {email for email, _, artist, _ in exclusions if artist == FOUR_TET}
    assert {(email, rg) for email, rg, artist, _ in exclusions if artist == FOUR_TET} == {
        (email, rg) for email in four_tet_fans for rg in (MAIDA_VALE, INTERVIEW)
    }
    with (SAMPLE_DIR / "library.csv").open(encoding="utf-8") as library:
        followers = {
            row["email"] for row in csv.DictReader(library) if row["artist_mbid"] == FOUR_TET
        }
    assert four_tet_fans == followers - {ZOE} and len(four_tet_fans) == 7
    assert {rg for _, rg, artist, _ in exclusions if artist == BJORK} == {AUDIOBOOK}

    # Once she has unsubscribed nobody wants them: narrow again, and they leave the partition.
    with engine.connect() as connection:
        zoe = subscriber_id_for(connection, ZOE)
    unsubscribe_by_id(engine, zoe)
    again = _materialize(engine, source, tmp_path)
    assert _searches(http_server) == [NARROW] * 3
    assert (again["query_widened"], again["subscribers_selecting_broadcast"]) == (False, 0)
    assert _broadcasts_stored(engine) == set()


def test_recorded_pages_of_the_narrow_search_fall_back_with_a_warning(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bundled sample holds only the narrow search: the day still runs (offline demo), and
    the log and metadata say the broadcasts were not fetched."""
    assert import_subscribers(sqlite_engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(sqlite_engine, SAMPLE_DIR / "library.csv").ok
    change_preferences(sqlite_engine, ZOE, release_types=parse_release_types("default,broadcast"))
    with caplog.at_level(logging.WARNING):
        fetched = _materialize(sqlite_engine, SnapshotReleaseSource(), tmp_path)
    assert (fetched["query"], fetched["query_widened"]) == (NARROW, False)
    assert fetched["subscribers_selecting_broadcast"] == 1
    assert fetched["query_widened_why"].startswith(
        "search not widened although 1 subscribers select broadcasts"
    )
    assert "hold only the narrow search for 2026-11-23" in caplog.text


def test_what_widening_costs_in_requests(http_server: LoopbackServer, recorded: Path) -> None:
    """One more page per 100 more release groups in the window, at one request per second."""
    http_server.handler = musicbrainz_replay(recorded)

    def fetch(widened: bool) -> tuple[int, int, list[float]]:
        clock = FakeClock()
        client = MusicBrainzClient(
            f"{http_server.url}/ws/2",
            contact="test@example.org",
            clock=clock,
            limiter=RateLimiter(1.0, clock),
            rng=random.Random(7),
        )
        fetched = client.fetch(SAMPLE_DAY, widened=widened)
        assert fetched.widened is widened
        return fetched.requests, fetched.records_seen, clock.sleeps

    assert fetch(widened=False) == (3, 230, [1.0, 1.0])
    assert fetch(widened=True) == (3, 235, [1.0, 1.0])  # five broadcasts fit the last page
    shutil.rmtree(recorded / "widened")
    record_pages(
        recorded / "widened" / SAMPLE_DAY.isoformat(),
        sample_records() + BROADCASTS + synthetic_broadcasts(95),
    )
    assert fetch(widened=True) == (4, 330, [1.0, 1.0, 1.0])  # 100 more: one more second

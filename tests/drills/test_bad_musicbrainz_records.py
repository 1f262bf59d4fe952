"""Drill: MusicBrainz answers with records the warehouse cannot store, and with pages that are not
what the web service promises; the real `musicbutler run --date` against a loopback server.

A bad record (NUL or a lone surrogate in a title, wrong types, an oversized field) is skipped and
counted with its id; the day completes and every good record is announced. A page that is not a
search result page (``"count": true``, an empty page in the middle of the window) is retried and,
when it stays bad, fails the day naming the offset, with nothing of the day stored.
"""

from __future__ import annotations

import copy
import email
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from email import policy
from pathlib import Path

import pytest
from dagster import DagsterInstance
from sqlalchemy import Engine, func, select, update

from musicbutler_pipeline.assets import artist_releases
from musicbutler_pipeline.demo import SAMPLE_DIR
from musicbutler_pipeline.sources.musicbrainz import SOURCE_NAME, bundled_snapshot_root
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.schema import (
    library_artists,
    release_groups,
    sends,
    source_pages,
    subscribers,
)
from tests.builders import dated, load_source_pages, rederive
from tests.fixtures.loopback import (
    LoopbackServer,
    Reply,
    at_offset,
    musicbrainz_replay,
    scripted,
)

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-23"
EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
SAMPLE_PAGES = sorted((bundled_snapshot_root() / DAY).glob("offset-*.json"))
LIAM = "liam.oconnor@example.com"  # follows Burna Boy, whose "Lagos Midnight" came out on DAY
BURNA_BOY = "78a19169-ac75-4868-b504-7e2e073118e0"


def sample_records() -> list[dict]:
    return [r for path in SAMPLE_PAGES for r in json.loads(path.read_bytes())["release-groups"]]


LAGOS = next(r for r in sample_records() if r["title"] == "Lagos Midnight")


def variant(n: int, **changes: object) -> dict:
    """A copy of "Lagos Midnight" (dated DAY, by a followed artist) under a new id."""
    record = copy.deepcopy(LAGOS)
    record["id"] = f"0000000{n}-dead-4bad-8bad-00000000000{n}"
    record.update(changes)
    return record


def bad_credit(value: object) -> list[dict]:
    credit = copy.deepcopy(LAGOS["artist-credit"])
    credit[0]["joinphrase"] = value
    return credit


# Each of these made the day fail on the old code (NUL on PostgreSQL, the surrogate on SQLite,
# the long primary type on PostgreSQL) or would now be a crash if the parser trusted its types.
BAD_RECORDS = [
    variant(1, title="Lagos\u0000Midnight"),
    variant(2, title="Lagos \ud800 Midnight"),
    variant(3, **{"primary-type": "Album" * 10}),
    variant(4, **{"artist-credit": {"name": "Burna Boy"}}),
    variant(5, **{"first-release-date": 20261123}),
    variant(6, **{"artist-credit": bad_credit({"text": " & "})}),
    variant(7, title="Lagos Midnight" * 10_000),
    {**variant(8), "id": 12345},
]
BAD_IDS = [str(record["id"]) for record in BAD_RECORDS]
# A stray line break and tab: cleaned to one line and announced, not lost.
CLEANED = variant(9, title="Lagos Midnight\r\n(Extended)\tMix")
CLEANED_TITLE = "Lagos Midnight (Extended) Mix"


def write_pages(root: Path, records: list[dict]) -> Path:
    """Pages of 100 as MusicBrainz answers the window ending on DAY. ``json.dumps`` writes the
    NUL and the lone surrogate as ``\\u0000`` and ``\\ud800`` escapes, as a JSON server would."""
    directory = root / DAY
    directory.mkdir(parents=True)
    for offset in range(0, len(records), 100):
        page = {"count": len(records), "offset": offset, "release-groups": records[offset:][:100]}
        (directory / f"offset-{offset:04d}.json").write_text(json.dumps(page))
    return root


@dataclass
class Installation:
    root: Path
    warehouse_url: str
    engine: Engine
    env: dict[str, str]

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def musicbutler(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "musicbutler_pipeline.cli", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def artist_releases_metadata(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
        """The metadata of the day's artist_releases materialization, read from the instance
        the run wrote to."""
        for name in ("DAGSTER_HOME", "MUSICBUTLER_DAGSTER_POSTGRES_URL"):
            if name in self.env:
                monkeypatch.setenv(name, self.env[name])
        with DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(artist_releases.key)
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture
def musicbrainz() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def installation(
    request: pytest.FixtureRequest, tmp_path: Path, musicbrainz: LoopbackServer
) -> Iterator[Installation]:
    """The sample subscribers and library on a real warehouse of each dialect, the Dagster
    instance on the same kind of database, mail to a file outbox, and MusicBrainz and
    ListenBrainz on loopback (ListenBrainz answers 204: libraries stay as imported)."""
    listenbrainz = LoopbackServer()
    listenbrainz.handler = lambda _request: Reply(204, b"")
    listenbrainz.start()
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    if request.param == "sqlite":
        warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        # The local instance settings (SQLite storage next to DAGSTER_HOME).
        (dagster_home / "dagster.yaml").write_text(
            (REPO / "musicbutler_pipeline" / "dagster.yaml").read_text()
        )
    else:
        database: Callable[[], str] = request.getfixturevalue("postgres_database")
        warehouse_url = database()
        # The production instance settings (deploy/dagster.yaml) on a database of its own.
        (dagster_home / "dagster.yaml").write_text((REPO / "deploy/dagster.yaml").read_text())
        env["MUSICBUTLER_DAGSTER_POSTGRES_URL"] = database()
    env.update(
        MUSICBUTLER_HOME=str(tmp_path / "home"),
        MUSICBUTLER_WAREHOUSE_URL=warehouse_url,
        MUSICBUTLER_MAIL_URL=(tmp_path / "outbox").as_uri(),
        MUSICBUTLER_MAIL_FROM="MusicButler <butler@example.org>",
        MUSICBUTLER_MUSICBRAINZ_URL=f"{musicbrainz.url}/ws/2",
        MUSICBUTLER_CONTACT="drill@example.org",
        MUSICBUTLER_LISTENBRAINZ_URL=f"{listenbrainz.url}/1",
        MUSICBUTLER_SECRET_KEY="drill-secret-key-0123456789",
        DAGSTER_HOME=str(dagster_home),
        PYTHONUNBUFFERED="1",
        MUSICBUTLER_MAX_SEND_AGE_DAYS="3650",  # the recorded day is fixed in the past
    )
    engine = make_engine(warehouse_url)
    upgrade(engine)
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    if request.param == "postgresql":
        dagster = str(Path(sys.executable).with_name("dagster"))
        subprocess.run(
            [dagster, "instance", "migrate"], env=env, cwd=tmp_path, check=True, timeout=300
        )
    try:
        yield Installation(tmp_path, warehouse_url, engine, env)
    finally:
        engine.dispose()
        listenbrainz.stop()


def messages_to(outbox: Path, recipient: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"].addresses[0].addr_spec == recipient:
            found.append(message)
    return found


@pytest.mark.postgres
def test_bad_records_are_skipped_and_counted_and_the_day_is_sent(
    installation: Installation, musicbrainz: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [*sample_records(), *BAD_RECORDS, CLEANED]
    musicbrainz.handler = musicbrainz_replay(write_pages(installation.root / "mb", records))

    run = installation.musicbutler("run", "--date", DAY)

    assert run.returncode == 0, run.stdout + run.stderr
    owed = EXPECTED["emails_expected"]
    assert f"{owed} email(s) sent" in run.stdout and "0 failed" in run.stdout, run.stdout
    releases = installation.artist_releases_metadata(monkeypatch)
    # The sample's own 3 malformed records, then ours, in page order, each named by its id.
    assert releases["records_skipped_malformed"] == EXPECTED["malformed_records"] + len(BAD_IDS)
    assert str(releases["skipped_record_ids"]).split(", ")[-len(BAD_IDS) :] == BAD_IDS
    assert releases["records_seen"] == len(records)
    with installation.engine.connect() as connection:
        stored = load_source_pages(connection, date.fromisoformat(DAY), SOURCE_NAME)
        titles = dict(
            connection.execute(
                select(release_groups.c.mbid, release_groups.c.title).where(
                    release_groups.c.partition_date == date.fromisoformat(DAY)
                )
            ).all()
        )
        sent = connection.execute(
            select(func.count()).select_from(sends).where(sends.c.state == "sent")
        ).scalar_one()
    assert sent == owed
    assert not set(BAD_IDS) & set(titles)
    assert titles[CLEANED["id"]] == CLEANED_TITLE
    assert titles[LAGOS["id"]] == "Lagos Midnight"
    # The raw pages are stored as received, and re-deriving the day skips the very same records.
    served = sorted((installation.root / "mb" / DAY).glob("offset-*.json"))
    assert [page.sha256 for page in stored] == [
        hashlib.sha256(path.read_bytes()).hexdigest() for path in served
    ]
    assert [page.body for page in stored] == [path.read_bytes() for path in served]
    assert [page.record_count for page in stored] == [100, 100, 39]
    again = rederive(stored, date.fromisoformat(DAY), lookback_days=14)
    assert list(again.skipped_ids[-len(BAD_IDS) :]) == BAD_IDS
    assert {group.mbid for group in dated(again, date.fromisoformat(DAY))} >= set(titles)
    [liam] = messages_to(installation.outbox, LIAM)
    lines = liam.get_body(("plain",)).get_content().splitlines()
    assert f"  {CLEANED_TITLE}" in lines and "  Lagos Midnight" in lines


# In `make drills`: 77 s for both dialects, over make test's 15 minutes with the rest.
@pytest.mark.drills_matrix
@pytest.mark.postgres
def test_names_and_titles_stay_in_their_place_in_a_sent_digest(
    installation: Installation, musicbrainz: LoopbackServer
) -> None:
    """Whatever the warehouse holds (a name from an older import, a title from an older fetch),
    a digest keeps its layout and its size."""
    musicbrainz.handler = musicbrainz_replay(bundled_snapshot_root())
    with installation.engine.begin() as connection:
        connection.execute(
            update(subscribers)
            .where(subscribers.c.email == LIAM)
            .values(name="Liam\r\nBcc: everyone@example.org\n" + "O" * 100_000)
        )
        connection.execute(
            update(library_artists)
            .where(library_artists.c.artist_mbid == BURNA_BOY)
            .values(artist_name="Burna\nBoy\u2028" + "B" * 100_000)
        )

    run = installation.musicbutler("run", "--date", DAY)

    assert run.returncode == 0, run.stdout + run.stderr
    [liam] = messages_to(installation.outbox, LIAM)
    size = len(liam.as_bytes())
    # Liam's digest with listen buttons and the footer's links is about 49 KB; the 200,000
    # characters of those names, kept, would add four times that (Gmail clips past 102 KB).
    assert size < 60_000, f"{size} bytes"
    assert "Bcc" not in liam and len(liam.get_all("To") or []) == 1
    [to] = liam["To"].addresses
    assert to.addr_spec == LIAM
    assert to.display_name.replace(" ", "").startswith("LiamBcc:everyone@example.orgOOO")
    text = liam.get_body(("plain",)).get_content()
    lines = text.splitlines()
    greeting = [line for line in lines if line.startswith("Hi ")]
    # At most 80 characters of a name are shown, the last one an ellipsis when it is cut.
    assert greeting == [f"Hi Liam Bcc: everyone@example.org {'O' * 48}…,"], greeting
    assert not any(line.startswith("Bcc") or line == "Boy" for line in lines)
    heading = [line for line in lines if line.startswith("Burna")]
    # At most 100 characters of an artist name, then " (2 releases)".
    assert heading and all(len(line) <= 100 + 15 for line in heading), heading


@pytest.mark.postgres
def test_an_empty_page_mid_window_fails_the_day_and_stores_nothing(
    installation: Installation, musicbrainz: LoopbackServer
) -> None:
    """At the shipped defaults (5 attempts, backoff from 1 s): the page is retried, stays
    empty, and the day fails naming the offset rather than store 100 of 230 records."""
    empty = Reply.json({"count": 230, "offset": 100, "release-groups": []})
    musicbrainz.handler = scripted(
        musicbrainz_replay(bundled_snapshot_root()), at_offset(100), [empty] * 100
    )

    run = installation.musicbutler("run", "--date", DAY)

    assert run.returncode != 0, run.stdout + run.stderr
    [line] = [line for line in run.stderr.splitlines() if line.startswith(f"{DAY}: run ")]
    assert "offset=100" in line and "no release groups at offset 100 of 230" in line, line
    assert "after 5 attempt(s)" in line, line
    requests = musicbrainz.requests_to("/release-group")
    assert [request.query["offset"] for request in requests] == ["0"] + ["100"] * 5
    with installation.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(source_pages)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(release_groups)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(sends)).scalar() == 0
    assert not list(installation.outbox.glob("*.eml"))

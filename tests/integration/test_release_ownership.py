"""Raw page storage and lookback ownership in the warehouse, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import Engine, func, inspect, select

from musicbutler_pipeline.domain.models import CreditedArtist, ReleaseGroup, SourcePage
from musicbutler_pipeline.domain.rules import exact_release_date
from musicbutler_pipeline.warehouse.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from musicbutler_pipeline.warehouse.pages import replace_source_pages
from musicbutler_pipeline.warehouse.releases import claim_release_groups
from musicbutler_pipeline.warehouse.schema import (
    release_group_artists,
    release_groups,
    source_pages,
)
from tests.builders import load_source_pages

NOW = datetime(2026, 11, 23, 21, 35, tzinfo=UTC)
NOV = {day: date(2026, 11, day) for day in range(1, 31)}


def page(offset: int, body: bytes) -> SourcePage:
    return SourcePage(
        f"http://mb.test/ws/2/release-group?offset={offset}", "q", offset, body, 1, 2, NOW
    )


def group(label: str, released: str) -> ReleaseGroup:
    mbid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"test:rg:{label}"))
    return ReleaseGroup(
        mbid=mbid,
        title=label,
        primary_type="Album",
        secondary_types=(),
        first_release_date=released,
        release_date=exact_release_date(released),
        artists=(
            CreditedArtist(str(uuid.uuid5(uuid.NAMESPACE_URL, "a")), "A", " & "),
            CreditedArtist(str(uuid.uuid5(uuid.NAMESPACE_URL, "b")), "B"),
        ),
    )


def fetch(engine: Engine, day: date, *groups: ReleaseGroup):
    """What artist_releases writes for ``day``: its pages, then its claim, in one transaction."""
    with engine.begin() as connection:
        replace_source_pages(connection, day, "musicbrainz", [page(0, b"{}")])
        return claim_release_groups(
            connection, day, groups, source="test", pages_source="musicbrainz", fetched_at=NOW
        )


def owners(engine: Engine) -> dict[str, date]:
    with engine.connect() as connection:
        rows = connection.execute(select(release_groups.c.title, release_groups.c.partition_date))
        return dict(rows.all())


def test_pages_are_stored_compressed_and_replaced_per_partition(engine: Engine) -> None:
    bodies = [b'{"count": 2, "release-groups": [1]}', '{"é": "✨"}'.encode()]
    with engine.begin() as connection:
        replace_source_pages(
            connection, NOV[23], "musicbrainz", [page(0, bodies[0]), page(1, bodies[1])]
        )
        replace_source_pages(connection, NOV[22], "musicbrainz", [page(0, b"other day")])
    with engine.connect() as connection:
        stored = load_source_pages(connection, NOV[23], "musicbrainz")
        raw = connection.execute(
            select(source_pages.c.body_gzip, source_pages.c.sha256, source_pages.c.byte_count)
            .where(source_pages.c.partition_date == NOV[23])
            .order_by(source_pages.c.page_offset)
        ).all()
    assert [p.body for p in stored] == bodies
    assert [p.sha256 for p in stored] == [hashlib.sha256(body).hexdigest() for body in bodies]
    assert [gzip.decompress(row.body_gzip) for row in raw] == bodies
    assert [row.byte_count for row in raw] == [len(body) for body in bodies]
    assert stored[0].fetched_at.replace(tzinfo=UTC) == NOW

    with engine.begin() as connection:
        replace_source_pages(connection, NOV[23], "musicbrainz", [page(0, b"again")])
    with engine.connect() as connection:
        assert [p.body for p in load_source_pages(connection, NOV[23], "musicbrainz")] == [b"again"]
        assert [p.body for p in load_source_pages(connection, NOV[22], "musicbrainz")] == [
            b"other day"
        ]


def test_each_release_group_belongs_to_the_first_partition_that_saw_it(engine: Engine) -> None:
    on_20, old, late_21, on_22 = (
        group("on 11-20", "2026-11-20"),
        group("before the watch", "2026-11-15"),
        group("entered late", "2026-11-21"),
        group("on 11-22", "2026-11-22"),
    )
    first = fetch(engine, NOV[20], on_20, old)
    assert (first.watch_start, first.dated_on_day, first.before_watch_start) == (NOV[20], 1, 1)
    assert owners(engine) == {"on 11-20": NOV[20]}

    second = fetch(engine, NOV[22], on_20, late_21, on_22, old)
    assert (second.dated_on_day, second.added_late, second.owned_by_earlier) == (1, 1, 1)
    assert second.before_watch_start == 1
    expected = {"on 11-20": NOV[20], "entered late": NOV[22], "on 11-22": NOV[22]}
    assert owners(engine) == expected

    again = fetch(engine, NOV[22], on_20, late_21, on_22, old)  # a re-run changes nothing
    assert (again.added_late, again.moved_from_later, again.owned_by_earlier) == (1, 0, 1)
    assert owners(engine) == expected

    backfill = fetch(engine, NOV[21], on_20, late_21)  # an earlier day sees it: it moves there
    assert (backfill.moved_from_later, backfill.dated_on_day) == (1, 1)
    assert owners(engine) == {**expected, "entered late": NOV[21]}

    fetch(engine, NOV[22], on_20, late_21, on_22, old)
    assert owners(engine)["entered late"] == NOV[21]  # and a later re-run leaves it there
    stored = len(owners(engine))
    with engine.connect() as connection:
        credits = connection.execute(select(func.count()).select_from(release_group_artists))
        assert credits.scalar_one() == 2 * stored  # no orphaned or doubled credits


def test_lookback_zero_fetches_claim_their_own_day_only(engine: Engine) -> None:
    fetch(engine, NOV[20], group("on 11-20", "2026-11-20"))
    claim = fetch(engine, NOV[21], group("on 11-21", "2026-11-21"))
    assert (claim.dated_on_day, claim.added_late) == (1, 0)
    assert owners(engine) == {"on 11-20": NOV[20], "on 11-21": NOV[21]}


def test_migration_0002_goes_down_and_up_again(engine: Engine) -> None:
    head = head_revision(engine)
    assert current_revision(engine) == head
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert "source_pages" not in inspect(engine).get_table_names()
    assert current_revision(engine) == "0001"
    upgrade(engine)
    assert "source_pages" in inspect(engine).get_table_names()
    assert {c["name"] for c in inspect(engine).get_columns("source_pages")} == set(
        source_pages.c.keys()
    )
    upgrade(engine)  # safe to repeat
    assert current_revision(engine) == head

"""Retention on SQLite and PostgreSQL: old drops and source pages go in bounded batches, newer
ones stay, the send ledger and announcements are never touched, and pruning again changes
nothing."""

from datetime import date, timedelta

import pytest
from sqlalchemy import ColumnElement, Engine, func, insert, select, text

from musicbutler_pipeline.cli import main
from musicbutler_pipeline.warehouse.retention import prune_warehouse
from musicbutler_pipeline.warehouse.schema import announcements, drops, sends, source_pages
from tests.builders import NOW, add_subscriber, mbid, record_sent_email
from tests.clock import pin_today

TODAY = date(2026, 12, 1)


def _ago(days: int, today: date = TODAY) -> date:
    return today - timedelta(days=days)


def _fill(engine: Engine, today: date = TODAY) -> None:
    """Drops for two subscribers on days 120, 91, 90 and 3 days ago, sent and announced on the
    oldest day; MusicBrainz pages 200 (its first day), 45, 31, 30 and 1 days ago, and one day of
    another source 45 days ago (its only, so its first)."""
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    with engine.begin() as connection:
        for age in (120, 91, 90, 3):
            for subscriber in (ana, ben):
                connection.execute(
                    insert(drops),
                    [
                        {
                            "partition_date": _ago(age, today),
                            "subscriber_id": subscriber,
                            "release_group_mbid": mbid(f"rg:{age}:{n}"),
                            "artist_mbid": mbid("artist"),
                            "artist_name": "Artist",
                        }
                        for n in range(3)
                    ],
                )
        send_id = record_sent_email(
            connection,
            day=_ago(120, today),
            subscriber_id=ana,
            recipient="ana@example.com",
            release_groups=3,
        )
        connection.execute(
            insert(announcements),
            [
                {
                    "subscriber_id": ana,
                    "release_group_mbid": mbid(f"rg:120:{n}"),
                    "partition_date": _ago(120, today),
                    "send_id": send_id,
                    "announced_at": NOW,
                }
                for n in range(3)
            ],
        )
        pages = [("musicbrainz", age) for age in (200, 45, 31, 30, 1)] + [("other", 45)]
        connection.execute(
            insert(source_pages),
            [
                {
                    "partition_date": _ago(age, today),
                    "source": source,
                    "page_offset": offset,
                    "url": "https://musicbrainz.org/ws/2/release-group",
                    "query": "q",
                    "sha256": "0" * 64,
                    "record_count": 1,
                    "total_count": 1,
                    "byte_count": 2,
                    "fetched_at": NOW,
                    "body_gzip": b"\x1f\x8b",
                }
                for source, age in pages
                for offset in (0, 100)
            ],
        )


def _ages(engine: Engine, table_date: ColumnElement[date], today: date = TODAY) -> dict[int, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(table_date, func.count()).group_by(table_date).order_by(table_date)
        ).all()
    return {(today - day).days: count for day, count in rows}


def _ledger(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(sends)).scalar_one(),
            connection.execute(select(func.count()).select_from(announcements)).scalar_one(),
        )


def test_old_days_go_in_batches_newer_stay_and_the_ledger_is_untouched(engine: Engine) -> None:
    _fill(engine)
    kept = {"keep_drops_days": 90, "keep_source_pages_days": 30}

    dry = prune_warehouse(engine, TODAY, dry_run=True, **kept)
    assert [(p.table, p.rows) for p in dry] == [("drops", 12), ("source_pages", 4)]
    assert _ages(engine, drops.c.partition_date) == {120: 6, 91: 6, 90: 6, 3: 6}  # nothing gone

    drops_pruned, pages_pruned = prune_warehouse(engine, TODAY, batch_rows=5, **kept)
    assert (drops_pruned.rows, drops_pruned.before) == (12, _ago(90))
    assert drops_pruned.batches == 3  # 5 + 5 + 2: each batch its own transaction
    assert (pages_pruned.rows, pages_pruned.before) == (4, _ago(30))
    # The 90th day back is the oldest kept; sends and announcements of pruned days stay.
    assert _ages(engine, drops.c.partition_date) == {90: 6, 3: 6}
    # Each source's first day stays: it is where watching started (pages.watch_start).
    assert _ages(engine, source_pages.c.partition_date) == {200: 2, 45: 2, 30: 2, 1: 2}
    with engine.connect() as connection:
        first_other = connection.execute(
            select(func.count()).where(source_pages.c.source == "other")
        ).scalar_one()
    assert first_other == 2
    assert _ledger(engine) == (1, 3)
    # The analyst views still answer for a pruned day from sends and announcements.
    with engine.connect() as connection:
        summary = connection.execute(
            text(
                "SELECT drops, subscribers_owed, emails_sent, announcements FROM daily_summary "
                "WHERE partition_date = :day"
            ),
            {"day": _ago(120)},
        ).one()
        listed = connection.execute(
            text("SELECT listed_under_artist_name FROM announced_releases")
        ).scalars()
        assert tuple(summary) == (0, 0, 1, 3)
        assert list(listed) == [None, None, None]

    again = prune_warehouse(engine, TODAY, batch_rows=5, **kept)
    assert [(p.rows, p.batches) for p in again] == [(0, 1), (0, 1)]
    assert _ages(engine, drops.c.partition_date) == {90: 6, 3: 6}
    assert _ledger(engine) == (1, 3)


def test_musicbutler_prune_dry_run_then_prune(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.migrate import upgrade

    monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("MUSICBUTLER_KEEP_DROPS_DAYS", "30")
    engine = make_engine(sqlite_url)
    upgrade(engine)
    pin_today(monkeypatch, TODAY)  # `musicbutler prune` reads today itself
    _fill(engine)

    assert main(["prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"drops: would delete 18 rows of days before {_ago(30)}" in out
    assert f"source_pages: would delete 4 rows of days before {_ago(30)}" in out
    assert _ages(engine, drops.c.partition_date) == {120: 6, 91: 6, 90: 6, 3: 6}

    assert main(["prune"]) == 0
    assert "drops: deleted 18 rows" in capsys.readouterr().out
    assert _ages(engine, drops.c.partition_date) == {3: 6}
    assert _ledger(engine) == (1, 3)
    engine.dispose()


def test_musicbutler_prune_refuses_a_window_shorter_than_the_send_age(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("MUSICBUTLER_MAX_SEND_AGE_DAYS", "10")
    monkeypatch.setenv("MUSICBUTLER_KEEP_DROPS_DAYS", "10")
    assert main(["prune"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("musicbutler: configuration error: MUSICBUTLER_KEEP_DROPS_DAYS: must be")

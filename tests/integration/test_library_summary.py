"""library_summary (the user_libraries asset's statistics) counts what the day's follows are:
current and later-ended follows count, earlier-ended ones do not, additions and removals of the
day are counted, unsubscribed subscribers are told apart; one pass, checked on both dialects."""

from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import Engine, insert, inspect

from musicbutler_pipeline.warehouse.libraries import (
    library_stats,
    library_summary,
    top_followed_artists,
)
from musicbutler_pipeline.warehouse.migrate import alembic_config, upgrade
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers

DAY = date(2026, 11, 23)
BEFORE = datetime(2026, 11, 1, 12, tzinfo=UTC)
ON_DAY = datetime(2026, 11, 23, 8, tzinfo=UTC)


def _subscriber(connection, n: int, *, unsubscribed: bool = False) -> int:
    return connection.execute(
        insert(subscribers)
        .values(
            email=f"s{n}@example.org",
            email_key=f"s{n}@example.org",
            subscribed_at=BEFORE,
            updated_at=BEFORE,
            unsubscribed_at=BEFORE if unsubscribed else None,
        )
        .returning(subscribers.c.id)
    ).scalar_one()


def _follow(connection, subscriber_id: int, artist: str, *, at=BEFORE, ended=None) -> None:
    connection.execute(
        insert(library_artists).values(
            subscriber_id=subscriber_id,
            artist_mbid=f"00000000-0000-4000-8000-{artist * 12}",
            artist_name=f"Artist {artist}",
            source="csv",
            followed_at=at,
            unfollowed_on=ended,
        )
    )


def test_summary_counts_the_days_follows(engine: Engine) -> None:
    with engine.begin() as connection:
        ana, ben, cy, dee = (_subscriber(connection, n) for n in range(4))
        gone = _subscriber(connection, 4, unsubscribed=True)
        _follow(connection, ana, "a")
        _follow(connection, ana, "b", at=ON_DAY)  # added on the day
        _follow(connection, ben, "a")
        _follow(connection, ben, "c", ended=date(2026, 11, 24))  # ends after the day: counts
        _follow(connection, cy, "c", ended=DAY)  # removed on the day: no longer counts
        _follow(connection, dee, "d", ended=date(2026, 11, 2))  # long gone
        _follow(connection, gone, "a")
    with engine.connect() as connection:
        stats, top = library_summary(connection, DAY, limit=2)
        assert (
            stats.subscribers,
            stats.active_subscribers,
            stats.follows,
            stats.distinct_artists,
            stats.added_on_day,
            stats.removed_on_day,
        ) == (3, 2, 5, 3, 1, 1)
        assert top == [("Artist a", 3), ("Artist b", 1)]
        assert library_stats(connection, DAY) == stats
        assert top_followed_artists(connection, DAY, limit=5) == [
            ("Artist a", 3),
            ("Artist b", 1),
            ("Artist c", 1),
        ]


def test_summary_of_an_empty_library(engine: Engine) -> None:
    with engine.connect() as connection:
        stats, top = library_summary(connection, DAY)
    assert (stats.subscribers, stats.follows, stats.distinct_artists, top) == (0, 0, 0, [])


def test_migration_0009_index_down_and_up(engine: Engine) -> None:
    def indexes() -> set[str]:
        return {str(index["name"]) for index in inspect(engine).get_indexes("library_artists")}

    assert "ix_library_artists_ended" in indexes()
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert "ix_library_artists_ended" not in indexes()
    upgrade(engine)
    assert "ix_library_artists_ended" in indexes()

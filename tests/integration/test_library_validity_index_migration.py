"""Migration 0014 replaces the artist index of library_artists by (artist, unfollowed_on) exactly
as warehouse/schema.py declares it, and goes down and up again, on SQLite and PostgreSQL. (That
the day's followers per artist are then an index-only scan is shown by benchmarks/drops.py at
scale: on a near-empty test table the planner rightly prefers other plans.)"""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from musicbutler_pipeline.warehouse.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from musicbutler_pipeline.warehouse.schema import metadata


def artist_indexes(engine: Engine) -> dict[str, list[str]]:
    return {
        str(index["name"]): [str(column) for column in index["column_names"]]
        for index in inspect(engine).get_indexes("library_artists")
        if index["column_names"][0] == "artist_mbid"
    }


def test_the_migrated_indexes_are_the_declared_ones(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            difference
            for difference in compare_metadata(context, metadata)
            if "library_artists" in repr(difference)
        ]
    assert differences == []
    assert artist_indexes(engine) == {
        "ix_library_artists_artist_validity": ["artist_mbid", "unfollowed_on"]
    }


def test_migration_0014_goes_down_and_up_again(engine: Engine) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
    assert current_revision(engine) == "0012"
    assert artist_indexes(engine) == {"ix_library_artists_artist_mbid": ["artist_mbid"]}
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert artist_indexes(engine) == {
        "ix_library_artists_artist_validity": ["artist_mbid", "unfollowed_on"]
    }

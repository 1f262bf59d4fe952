"""Migration 0012 adds subscriber_preferences.broadcast as warehouse/schema.py declares it, false
for the rows already there (their digests do not change), and goes down and up again, on SQLite
and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from musicbutler_pipeline.domain.preferences import DEFAULT_RELEASE_TYPES
from musicbutler_pipeline.warehouse.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from musicbutler_pipeline.warehouse.preferences import read_preferences
from musicbutler_pipeline.warehouse.schema import metadata
from tests.builders import add_subscriber


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_migrated_column_is_the_declared_one(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            difference
            for difference in compare_metadata(context, metadata)
            if "subscriber_preferences" in repr(difference)
        ]
    assert differences == []


def test_rows_from_before_0012_do_not_select_broadcasts(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    _downgrade(engine, "0011")
    assert current_revision(engine) == "0011"
    columns = {c["name"] for c in inspect(engine).get_columns("subscriber_preferences")}
    assert "broadcast" not in columns
    with engine.begin() as connection:
        # What 0008..0011 stored for someone who kept every type then: all seven true.
        connection.execute(
            text(
                "INSERT INTO subscriber_preferences (subscriber_id, updated_at) "
                "VALUES (:id, CURRENT_TIMESTAMP)"
            ),
            {"id": ana},
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert read_preferences(engine, ana).release_types == DEFAULT_RELEASE_TYPES
    _downgrade(engine, "0011")
    upgrade(engine)
    assert read_preferences(engine, ana).release_types == DEFAULT_RELEASE_TYPES

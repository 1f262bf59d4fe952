"""Migration 0011 creates release_group_links exactly as warehouse/schema.py declares it, and
goes down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from musicbutler_pipeline.warehouse.migrate import alembic_config, current_revision, upgrade
from musicbutler_pipeline.warehouse.schema import metadata, release_group_links


def test_the_migrated_table_is_the_declared_one(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            difference
            for difference in compare_metadata(context, metadata)
            if "release_group_links" in repr(difference)
        ]
    assert differences == []
    indexes = {index["name"] for index in inspect(engine).get_indexes("release_group_links")}
    assert indexes == {"ix_release_group_links_partition_date"}
    assert inspect(engine).get_pk_constraint("release_group_links")["constrained_columns"] == [
        "release_group_mbid",
        "service",
    ]


def test_migration_0011_goes_down_and_up_again(engine: Engine) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010")
    assert "release_group_links" not in inspect(engine).get_table_names()
    assert current_revision(engine) == "0010"
    upgrade(engine)
    assert [c["name"] for c in inspect(engine).get_columns("release_group_links")] == list(
        release_group_links.c.keys()
    )

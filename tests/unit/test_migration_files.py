"""The migration files' names, which `is_current` reads instead of asking Alembic."""

from sqlalchemy import Engine

from musicbutler_pipeline.warehouse.migrate import head_revision, is_current, newest_migration


def test_the_newest_migration_file_is_alembics_head(sqlite_engine: Engine) -> None:
    assert newest_migration() == head_revision(sqlite_engine)
    assert is_current(sqlite_engine)


def test_an_empty_or_older_warehouse_is_not_current(tmp_path) -> None:
    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.migrate import upgrade

    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert not is_current(empty)
        upgrade(empty, "0010")
        assert not is_current(empty)
        upgrade(empty)
        assert is_current(empty)
    finally:
        empty.dispose()

"""Create or migrate the warehouse schema with Alembic, from code (``musicbutler db upgrade``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Each migration is named by its revision, which numbers them in order: 0012_what_it_does.py.
_MIGRATION_FILE = re.compile(r"(\d{4})_\w+\.py")

# Alembic is imported where it is used, not here: its import (Mako, and Mako's Pygments) was a
# third of the start of every command, which only checks that the schema is current.


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def newest_migration() -> str:
    """The revision of the highest-numbered migration file: the head, read without Alembic
    (tests/unit/test_migration_files.py checks that it is the head Alembic finds)."""
    return max(
        found.group(1)
        for path in (MIGRATIONS / "versions").iterdir()
        if (found := _MIGRATION_FILE.fullmatch(path.name))
    )


def is_current(engine: Engine) -> bool:
    """Whether the warehouse is at the newest migration: one read of Alembic's version table."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        stored = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return list(stored) == [newest_migration()]

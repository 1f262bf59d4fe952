"""Engines for the warehouse URL, with the SQLite settings that make it a safe shared file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite files get their folder, WAL, foreign keys and real BEGINs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout
        # instead of failing with "database is locked" when a read turns into a write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def busy_engine(engine: Engine, *, connections: int) -> Iterator[Engine]:
    """An engine for a burst of one-statement writes (the mailer's per-email claims and marks):
    on a server database, a pool of ``connections`` in autocommit, without the pre-ping. Each
    would otherwise cost a round trip per write (the ping, the COMMIT): most of a mark's time.
    The connections are seconds old, not hours. Only for statements atomic on their own.
    SQLite has no pre-ping and may be in memory: it gets ``engine`` itself. Disposed at the end.
    """
    if engine.dialect.name == "sqlite":
        yield engine
        return
    busy = create_engine(
        engine.url,
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
        pool_size=connections,
        max_overflow=connections,
    )
    try:
        yield busy
    finally:
        busy.dispose()

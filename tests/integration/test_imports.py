"""CSV imports: bad rows reported by line while good rows land; re-import changes nothing."""

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from musicbutler_pipeline.warehouse import imports
from musicbutler_pipeline.warehouse.imports import (
    CsvFormatError,
    import_library,
    import_subscribers,
)
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers

RADIOHEAD = "a74b1b7f-71a5-4011-9441-d0b5e4122711"
BJORK = "87c5dedd-371d-4a53-9f7f-80522fb7f3cb"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _count(engine: Engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_subscribers_bad_rows_by_line_good_rows_kept(engine: Engine, tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "subs.csv",
        (
            "email,name,listenbrainz_user\n"
            "ana@example.com,Ana Souza,ana_lb\n"
            "not-an-address,Bad,\n"
            '"zoe@example.org","Zoë, the ""second""",\n'
            "ben@example.com,Ben,has space\n"
            "CY@EXAMPLE.NET,,\n"
        ),
    )
    report = import_subscribers(engine, csv)
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [
        (3, "email"),
        (5, "listenbrainz_user"),
    ]
    assert (report.rows, report.inserted, report.updated, report.unchanged) == (5, 3, 0, 0)
    with engine.connect() as connection:
        rows = dict(connection.execute(select(subscribers.c.email, subscribers.c.name)).all())
    assert rows == {
        "ana@example.com": "Ana Souza",
        "zoe@example.org": 'Zoë, the "second"',
        "CY@example.net": None,
    }

    again = import_subscribers(engine, csv)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert _count(engine, subscribers) == 3


def test_reimport_never_resubscribes(engine: Engine, tmp_path: Path) -> None:
    csv = _write(tmp_path / "subs.csv", "email,name\nana@example.com,Ana\n")
    import_subscribers(engine, csv)
    with engine.begin() as connection:
        connection.execute(update(subscribers).values(unsubscribed_at=func.now()))
    _write(csv, "email,name\nana@example.com,Ana S.\n")
    report = import_subscribers(engine, csv)
    assert report.updated == 1
    with engine.connect() as connection:
        name, unsubscribed = connection.execute(
            select(subscribers.c.name, subscribers.c.unsubscribed_at)
        ).one()
    assert name == "Ana S." and unsubscribed is not None


def test_library_rows_validated_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    import_subscribers(engine, _write(tmp_path / "s.csv", "email\nana@example.com\n"))
    csv = _write(
        tmp_path / "lib.csv",
        (
            "email,artist_mbid,artist_name\n"
            f"ana@example.com,{RADIOHEAD},Radiohead\n"
            f"ana@example.com,{BJORK.upper()},Björk\n"
            "ana@example.com,radiohead,Radiohead\n"
            f"nobody@example.com,{RADIOHEAD},Radiohead\n"
            f"ana@example.com,{RADIOHEAD},Radiohead\n"
            f"ana@example.com,{BJORK},\n"
            "too,many,fields,here\n"
        ),
    )
    report = import_library(engine, csv)
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [
        (4, "artist_mbid"),
        (5, "email"),
        (7, "artist_name"),
        (8, "4 fields, expected 3"),
    ]
    assert "import subscribers first" in report.errors[1].message
    assert report.inserted == 2
    again = import_library(engine, csv)
    assert (again.inserted, again.unchanged) == (0, 2)
    with engine.connect() as connection:
        mbids = set(connection.execute(select(library_artists.c.artist_mbid)).scalars())
    assert mbids == {RADIOHEAD, BJORK}


def test_whole_file_problems_are_one_clear_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError, match=r"line 1: missing column.*artist_mbid"):
        import_library(engine, _write(tmp_path / "a.csv", "email,artist\nx@example.com,y\n"))
    with pytest.raises(CsvFormatError, match="cannot open"):
        import_subscribers(engine, tmp_path / "missing.csv")
    # Issue 10 changed this: one Latin-1 byte rejects its line, no longer the whole file.
    (tmp_path / "latin1.csv").write_bytes("email,name\nana@example.com,Jos\xe9\n".encode("latin-1"))
    report = import_subscribers(engine, tmp_path / "latin1.csv")
    assert [str(error) for error in report.errors] == ["line 2: not UTF-8 (byte 0xe9 at column 20)"]


def test_library_in_batches_same_counts_and_errors(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch boundaries change nothing: a duplicate in the same or a later batch, and every line
    of an unknown subscriber (a repeated one included) reported by its own line."""
    monkeypatch.setattr(imports, "STAGE_ROWS", 2)
    import_subscribers(engine, _write(tmp_path / "s.csv", "email\nana@example.com\n"))
    csv = _write(
        tmp_path / "lib.csv",
        (
            "email,artist_mbid,artist_name\n"
            f"ana@example.com,{RADIOHEAD},Radiohead\n"  # 2
            f"nobody@example.com,{RADIOHEAD},Radiohead\n"  # 3
            f"nobody@example.com,{RADIOHEAD},Radiohead\n"  # 4: same follow, same batch
            f"ANA@example.com,{RADIOHEAD},Radiohead\n"  # 5: same follow, a later batch
            f"ana@example.com,{BJORK},Björk\n"  # 6
            f"nobody@example.com,{BJORK},Björk\n"  # 7
        ),
    )
    report = import_library(engine, csv)
    assert [error.line for error in report.errors] == [3, 4, 7]
    assert (report.rows, report.inserted, report.unchanged) == (6, 2, 1)
    assert _count(engine, library_artists) == 2
    again = import_library(engine, csv)
    assert ([e.line for e in again.errors], again.inserted, again.unchanged) == ([3, 4, 7], 0, 3)


def test_library_import_commits_each_batch(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two batches the SQLite write lock is free and the first batch is visible: another
    writer gets in at once (no busy wait) instead of waiting for the whole file."""
    monkeypatch.setattr(imports, "STAGE_ROWS", 1)
    import_subscribers(sqlite_engine, _write(tmp_path / "s.csv", "email\nana@example.com\n"))
    csv = _write(
        tmp_path / "lib.csv",
        f"email,artist_mbid,artist_name\nana@example.com,{RADIOHEAD},R\nana@example.com,{BJORK},B\n",
    )
    database = sqlite_engine.url.database
    assert database is not None
    seen: list[int] = []
    write_follows = imports._write_follows

    def then_write_beside(*args, **kwargs) -> None:
        write_follows(*args, **kwargs)
        # timeout=0: BEGIN IMMEDIATE fails at once ("database is locked") if the lock is held.
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            seen.append(other.execute("SELECT count(*) FROM library_artists").fetchone()[0])
            other.execute("ROLLBACK")
        finally:
            other.close()

    monkeypatch.setattr(imports, "_write_follows", then_write_beside)
    report = import_library(sqlite_engine, csv)
    assert report.inserted == 2
    assert seen[:2] == [1, 2]

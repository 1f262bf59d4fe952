"""CSV imports: bad rows reported by line while good rows land; re-import changes nothing."""

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update

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


def _library_file_with_every_kind_of_line(tmp_path: Path) -> tuple[Path, list[int]]:
    """Good rows with bad lines of each kind among them, in a file whose lines take every path
    of the reader (plain, quoted, CRLF, blank, not UTF-8, control characters); the bad lines'
    numbers."""
    lines: list[bytes] = [b"email,artist_mbid,artist_name"]
    bad: list[int] = []
    for n in range(40):
        mbid = f"{n:08x}-71a5-4011-9441-d0b5e4122711"
        kind = n % 8
        if kind == 1:
            lines.append(f"ana@example.com,{mbid},Caf\xe9 {n}".encode("latin-1"))  # not UTF-8
            bad.append(len(lines))
        elif kind == 3:
            lines.append(f"ana@example.com,{mbid},Tab\there".encode())  # a control character
            bad.append(len(lines))
        elif kind == 5:
            lines.append(f'ana@example.com,{mbid},"Artist, {n}'.encode())  # unterminated quote
            bad.append(len(lines))
        elif kind == 6:
            lines.append(b"   ")  # blank: no row at all
        elif kind == 7:
            lines.append(f'ana@example.com,{mbid},"Artist, {n}"\r'.encode())  # quoted, CRLF
        else:
            lines.append(f"ana@example.com,{mbid},Artist {n}".encode())
    path = tmp_path / "lib.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, bad


@pytest.mark.parametrize("block_bytes", [1, 150, 1 << 20])
def test_library_lines_read_in_blocks_of_any_size_report_the_same(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    """Blocks of plain lines are read at once, the others line by line: wherever a block starts
    and ends (one line each, a few, the whole file), every bad line is reported by its own
    number and every good row lands, also with a batch boundary in the middle of a block."""
    monkeypatch.setattr(imports, "_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(imports, "STAGE_ROWS", 7)
    import_subscribers(engine, _write(tmp_path / "s.csv", "email\nana@example.com\n"))
    csv, bad = _library_file_with_every_kind_of_line(tmp_path)
    report = import_library(engine, csv)
    assert [error.line for error in report.errors] == bad
    assert "not UTF-8" in report.errors[0].message
    assert "control character U+0009" in report.errors[1].message
    assert "unterminated quote" in report.errors[2].message
    good = 40 - 5 - len(bad)  # 40 lines, 5 of them blank
    assert (report.rows, report.inserted) == (35, good)
    with engine.connect() as connection:
        names = set(connection.execute(select(library_artists.c.artist_name)).scalars())
    assert len(names) == good and "Artist, 7" in names and "Artist 0" in names
    again = import_library(engine, csv)
    assert ([e.line for e in again.errors], again.inserted, again.unchanged) == (bad, 0, good)


def test_library_import_skips_a_follow_a_concurrent_writer_added(
    postgres_url: str, tmp_path: Path
) -> None:
    """The INSERT of new follows runs without ON CONFLICT: a follow another transaction adds
    after the INSERT's snapshot makes it wait on the unique index, then fail when that
    transaction commits. The import then skips that follow (the other writer's is kept) and
    adds the rest, in the same batch."""
    import threading

    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.migrate import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        import_subscribers(engine, _write(tmp_path / "s.csv", "email\nana@example.com\n"))
        csv = _write(
            tmp_path / "lib.csv",
            f"email,artist_mbid,artist_name\nana@example.com,{RADIOHEAD},R\n"
            f"ana@example.com,{BJORK},B\n",
        )
        with engine.connect() as other, engine.connect() as watcher:
            other.begin()
            other.execute(
                library_artists.insert().values(
                    subscriber_id=select(subscribers.c.id).scalar_subquery(),
                    artist_mbid=BJORK,
                    artist_name="Björk (the other writer's)",
                    source="listenbrainz",
                    followed_at=func.now(),
                )
            )
            reports = []
            importer = threading.Thread(target=lambda: reports.append(import_library(engine, csv)))
            importer.start()
            # The import's INSERT waits for this transaction, on the unique index's entry.
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO library_artists%'"
            )
            while importer.is_alive() and not watcher.execute(waiting).scalar_one():
                watcher.rollback()
            assert importer.is_alive(), reports
            other.commit()
            importer.join(timeout=60)
        (report,) = reports
        assert (report.errors, report.inserted, report.unchanged) == ([], 1, 1)
        with engine.connect() as connection:
            rows = dict(
                connection.execute(
                    select(library_artists.c.artist_mbid, library_artists.c.source)
                ).all()
            )
        assert rows == {RADIOHEAD: "csv", BJORK: "listenbrainz"}
    finally:
        engine.dispose()

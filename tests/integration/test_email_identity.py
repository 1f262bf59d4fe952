"""One mailbox is one subscriber: addresses match case-insensitively in every lookup (issue 10,
finding 2). Imports on both dialects, the commands as processes, the unsubscribe link."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

from musicbutler_pipeline.mail.tokens import make_token
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.schema import library_artists, subscriber_merges, subscribers
from tests.builders import add_subscriber
from tests.integration.test_cli import musicbutler
from tests.integration.test_unsubscribe_web import KEY, _serving

RADIOHEAD = "a74b1b7f-71a5-4011-9441-d0b5e4122711"
BJORK = "87c5dedd-371d-4a53-9f7f-80522fb7f3cb"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_case_variants_in_one_file_are_one_subscriber(engine: Engine, tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "subs.csv",
        "email,name,listenbrainz_user\n"
        "Alice@example.com,Alice,\n"
        "alice@example.com,Alice L.,alice_lb\n"
        "ALICE@EXAMPLE.COM,Alice Liddell,alice_lb\n"
        "bob@example.com,Bob,\n",
    )
    report = import_subscribers(engine, csv)
    assert report.ok
    assert (report.rows, report.inserted, report.merged) == (4, 2, 2)
    assert [(note.line, note.message.split(" is ")[0]) for note in report.notes] == [
        (3, "alice@example.com"),
        (4, "ALICE@example.com"),
    ]
    assert "same subscriber as line 2 (Alice@example.com)" in report.notes[1].message
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                subscribers.c.email, subscribers.c.name, subscribers.c.listenbrainz_user
            ).order_by(subscribers.c.email)
        ).all()
    # The first spelling is the address; the last row's details win, as a re-import's would.
    assert [tuple(row) for row in rows] == [
        ("Alice@example.com", "Alice Liddell", "alice_lb"),
        ("bob@example.com", "Bob", None),
    ]

    again = import_subscribers(engine, csv)
    assert (again.inserted, again.updated, again.unchanged, again.merged) == (0, 0, 2, 2)

    library = _write(
        tmp_path / "lib.csv",
        "email,artist_mbid,artist_name\n"
        f"ALICE@example.com,{RADIOHEAD},Radiohead\n"
        f"alice@EXAMPLE.com,{BJORK},Björk\n"
        f"alice@example.com,{RADIOHEAD},Radiohead\n",
    )
    follows = import_library(engine, library)
    assert follows.ok and (follows.inserted, follows.unchanged) == (2, 0)
    with engine.connect() as connection:
        owners = connection.execute(
            select(func.count(func.distinct(library_artists.c.subscriber_id)))
        ).scalar_one()
    assert owners == 1


def test_a_later_spelling_updates_the_subscriber_and_says_so(
    engine: Engine, tmp_path: Path
) -> None:
    import_subscribers(engine, _write(tmp_path / "a.csv", "email,name\ncarol@example.com,C\n"))
    report = import_subscribers(
        engine, _write(tmp_path / "b.csv", "email,name\nCarol@Example.com,Carol\n")
    )
    assert report.ok and (report.inserted, report.updated) == (0, 1)
    assert [str(note) for note in report.notes] == [
        "line 2: Carol@example.com is subscriber carol@example.com "
        "(addresses are case-insensitive; the stored spelling is kept)"
    ]
    with engine.connect() as connection:
        assert connection.execute(select(subscribers.c.email, subscribers.c.name)).one() == (
            "carol@example.com",
            "Carol",
        )


def test_commands_find_the_subscriber_in_any_case(tmp_path: Path) -> None:
    assert musicbutler("db", "upgrade", cwd=tmp_path).returncode == 0
    first = _write(tmp_path / "first.csv", "email,name\nbob@example.com,Bob\n")
    assert musicbutler("subscribers", "import", str(first), cwd=tmp_path).returncode == 0
    out = musicbutler("unsubscribe", "bob@example.com", cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "bob@example.com: unsubscribed")

    # README: a re-import never opts an unsubscribed person back in, in whatever case.
    later = _write(tmp_path / "later.csv", "email,name\nBob@Example.com,Bob B.\n")
    again = musicbutler("subscribers", "import", str(later), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 subscribers added, 1 updated" in again.stdout
    assert "the stored spelling is kept" in again.stderr
    engine = make_engine(f"sqlite:///{tmp_path / '.musicbutler' / 'warehouse.db'}")
    with engine.connect() as connection:
        rows = connection.execute(select(subscribers.c.email, subscribers.c.unsubscribed_at)).all()
    engine.dispose()
    assert len(rows) == 1 and rows[0].email == "bob@example.com"
    assert rows[0].unsubscribed_at is not None

    out = musicbutler("unsubscribe", "BOB@EXAMPLE.COM", cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "bob@example.com: unsubscribed already")
    library = _write(
        tmp_path / "lib.csv", f"email,artist_mbid,artist_name\nBOB@example.com,{BJORK},Björk\n"
    )
    follows = musicbutler("library", "import", str(library), cwd=tmp_path)
    assert follows.returncode == 0 and "1 follows added" in follows.stdout, follows.stderr
    reconcile = musicbutler(
        "sends", "reconcile", "--date", "2026-11-23", "--mark-sent",
        "--subscriber", "Bob@EXAMPLE.com", cwd=tmp_path,
    )  # fmt: skip
    assert reconcile.returncode == 0, reconcile.stderr
    assert "0 claim(s) marked sent" in reconcile.stdout
    nobody = musicbutler("unsubscribe", "nobody@example.com", cwd=tmp_path)
    assert (nobody.returncode, nobody.stderr.strip()) == (
        1,
        "musicbutler: no subscriber nobody@example.com",
    )


def test_a_link_to_a_merged_id_unsubscribes_the_mailbox(sqlite_engine: Engine) -> None:
    survivor = add_subscriber(sqlite_engine, "dora@example.com", "Dora")
    with sqlite_engine.begin() as connection:
        connection.execute(
            insert(subscriber_merges).values(
                merged_id=survivor + 100,
                survivor_id=survivor,
                merged_email="Dora@example.com",
                merged_at=datetime.now(UTC),
            )
        )
    old_link = f"/unsubscribe/{make_token(survivor + 100, KEY)}"
    with _serving(sqlite_engine) as web:
        page = web.get(old_link)
        assert page.status_code == 200 and "Unsubscribe?" in page.text
        assert web.post(old_link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert "You are unsubscribed" in web.get(old_link).text
    with sqlite_engine.connect() as connection:
        assert (
            connection.execute(
                select(subscribers.c.unsubscribed_at).where(subscribers.c.id == survivor)
            ).scalar_one()
            is not None
        )

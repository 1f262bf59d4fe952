"""CSV fuzz drill (issue 10, finding 4): the `musicbutler ... import` commands as processes, on
SQLite and PostgreSQL, fed quotes, encodings, a BOM, CRLF, NUL, huge fields, duplicate headers,
case-variant addresses, and a generated file mixing random bad lines into good ones. Every line is
accounted for: imported, or reported once with its true line number, while the good rows land."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, Table, func, select

from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers

SEED = 20261123


@dataclass
class Warehouse:
    root: Path
    url: str
    engine: Engine

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))
        }
        env.update(
            MUSICBUTLER_HOME=str(self.root / "home"),
            MUSICBUTLER_WAREHOUSE_URL=self.url,
            MUSICBUTLER_SECRET_KEY="drill-secret-key-0123456789",
        )
        return subprocess.run(
            [sys.executable, "-m", "musicbutler_pipeline.cli", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def imports(self, noun: str, path: Path) -> Imported:
        result = self.run(noun, "import", str(path))
        assert "Traceback" not in result.stderr, result.stderr
        errors = re.findall(
            rf"^{re.escape(str(path))}: line (\d+): (?!note: )(.*)$", result.stderr, re.M
        )
        notes = re.findall(
            rf"^{re.escape(str(path))}: line (\d+): note: (.*)$", result.stderr, re.M
        )
        return Imported(
            result.returncode,
            [(int(line), message) for line, message in errors],
            [(int(line), message) for line, message in notes],
            result.stdout,
            result.stderr,
        )

    def count(self, table: Table) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(table)).scalar_one()

    def emails(self) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(select(subscribers.c.email)).scalars())


@dataclass
class Imported:
    code: int
    errors: list[tuple[int, str]]
    notes: list[tuple[int, str]]
    stdout: str
    stderr: str

    @property
    def bad_lines(self) -> list[int]:
        return [line for line, _ in self.errors]


@pytest.fixture
def warehouse(tmp_path: Path, warehouse_url: str) -> Iterator[Warehouse]:
    engine = make_engine(warehouse_url)
    place = Warehouse(tmp_path, warehouse_url, engine)
    upgraded = place.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    yield place
    engine.dispose()


def _file(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _mbid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def test_quotes(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "quotes.csv",
        "email,name\n"
        'ann@example.com,"Ann,\n'  # 2: unterminated: must not swallow the rows after it
        "bob@example.com,Bob\n"
        '"cy@example.com","Cy ""the"" Third"\n'
        'dee@example.com,"Dee" Dee\n'  # 5: text after the closing quote
        'eve@example.com,Eve "E" Ng\n'  # 6: a quote inside an unquoted field
        "fay@example.com,Fay\n"
        'gus@example.com, "Gus, G."\n',  # 8: a space before the opening quote
    )
    result = warehouse.imports("subscribers", path)
    assert result.code == 1
    assert result.errors == [
        (2, "field 2: unterminated quote (a quoted field must close on the line it opens; "
            "no field may contain a line break)"),
        (5, "field 2: text after the closing quote"),
        (6, 'field 2: a quote inside an unquoted field (quote the field and double the quote: '
            '"Ann ""Nan"" Lee")'),
        (8, "field 2: space before the opening quote"),
    ]  # fmt: skip
    assert warehouse.emails() == {"bob@example.com", "cy@example.com", "fay@example.com"}
    assert "7 rows: 3 subscribers added" in result.stdout


def test_encodings(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "latin1.csv",
        b"email,name\nana@example.com,Ana\njose@example.com,Jos\xe9\nzoe@example.com,Zo\xc3\xab\n",
    )
    result = warehouse.imports("subscribers", path)
    assert (result.code, result.errors) == (1, [(3, "not UTF-8 (byte 0xe9 at column 21)")])
    assert warehouse.emails() == {"ana@example.com", "zoe@example.com"}

    utf16 = _file(tmp_path, "utf16.csv", "email,name\nana@example.com,Ana\n".encode("utf-16"))
    refused = warehouse.run("subscribers", "import", str(utf16))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"musicbutler: {utf16}: line 1 (the header): not UTF-8 (byte 0xff at column 1)"
    )


def test_bom_and_crlf(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "windows.csv",
        "\ufeffemail,name,listenbrainz_user\r\n"
        "ana@example.com,Ana,ana_lb\r\n"
        "\r\n"
        '"ben@example.com","Ben, B.",\r\n'
        "cy@example.com,Cy\r\n",
    )
    result = warehouse.imports("subscribers", path)
    assert (result.code, result.errors) == (0, [])
    with warehouse.engine.connect() as connection:
        rows = connection.execute(
            select(subscribers.c.email, subscribers.c.name, subscribers.c.listenbrainz_user)
        ).all()
    assert sorted(tuple(row) for row in rows) == [
        ("ana@example.com", "Ana", "ana_lb"),
        ("ben@example.com", "Ben, B.", None),
        ("cy@example.com", "Cy", None),
    ]
    again = warehouse.imports("subscribers", path)
    assert again.code == 0 and "0 subscribers added, 0 updated, 3 unchanged" in again.stdout


def test_nul_and_control_characters(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "nul.csv",
        "email,name\n"
        "ana@example.com,An\x00a\n"
        "ben@example.com,Ben\n"
        "cy@example.com,Cy\x1b[31m\n"
        "dee@example.com,Dee\u2028Line two\n"
        "eve@example.com,Eve\rFake\n"
        "fay@example.com,Fay\n",
    )
    result = warehouse.imports("subscribers", path)
    assert result.code == 1
    assert result.errors == [
        (2, "control character U+0000 at column 19 (not allowed in any field)"),
        (4, "control character U+001B at column 18 (not allowed in any field)"),
        (5, "control character U+2028 at column 20 (not allowed in any field)"),
        (6, "control character U+000D at column 20 (not allowed in any field)"),
    ]
    assert warehouse.emails() == {"ben@example.com", "fay@example.com"}


def test_huge_fields(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "huge.csv",
        "email,name\n"
        f"ana@example.com,{'A' * 100_000}\n"
        "ben@example.com,Ben\n"
        f'cy@example.com,"{"C" * 200_000}"\n'
        f"dee@example.com,{'D' * 200}\n"
        f"{'e' * 300}@example.com,Eve\n",
    )
    result = warehouse.imports("subscribers", path)
    assert result.code == 1
    assert result.errors == [
        (2, "name: 100,000 characters, at most 200"),
        (4, "200,017 characters, far longer than any valid row "
            "(a name may have at most 200 characters)"),
        (6, "email: 312 characters, at most 254"),
    ]  # fmt: skip
    assert warehouse.emails() == {"ben@example.com", "dee@example.com"}

    library = _file(
        tmp_path,
        "library.csv",
        "email,artist_mbid,artist_name\n"
        f"ben@example.com,{uuid.uuid4()},{'N' * 501}\n"
        f"ben@example.com,{uuid.uuid4()},Nina\n",
    )
    follows = warehouse.imports("library", library)
    assert (follows.code, follows.errors) == (1, [(2, "artist_name: 501 characters, at most 500")])
    assert warehouse.count(library_artists) == 1


def test_duplicate_and_missing_header_columns(warehouse: Warehouse, tmp_path: Path) -> None:
    twice = _file(tmp_path, "twice.csv", "email,name,email\nana@example.com,Ana,ben@example.com\n")
    refused = warehouse.run("subscribers", "import", str(twice))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"musicbutler: {twice}: line 1: column 'email' appears twice "
        "(columns 1 and 3; expected email,name,listenbrainz_user,"
        "types,appearances,frequency,weekday,blocked_artists)"
    )
    missing = _file(tmp_path, "missing.csv", "email,artist,artist_name\nana@example.com,x,y\n")
    refused = warehouse.run("library", "import", str(missing))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"musicbutler: {missing}: line 1: missing column(s) artist_mbid "
        "(expected email,artist_mbid,artist_name)"
    )
    assert warehouse.count(subscribers) == 0


def test_case_variant_emails(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "variants.csv",
        "email,name\nAlice@example.com,Alice\nalice@example.com,Al\nALICE@EXAMPLE.COM,Ali\n",
    )
    result = warehouse.imports("subscribers", path)
    assert (result.code, result.errors) == (0, [])
    assert [line for line, _ in result.notes] == [3, 4]
    assert "same subscriber as line 2 (Alice@example.com)" in result.notes[0][1]
    assert "3 rows: 1 subscribers added, 0 updated, 0 unchanged, 2 merged" in result.stdout
    assert warehouse.emails() == {"Alice@example.com"}


# --- A generated file: many random bad lines among good ones -------------------------------------


def _bad_subscriber_line(rng: random.Random, n: int) -> bytes:
    email = f"bad{n}@example.com"
    kind = rng.randrange(12)
    return [
        f'{email},"Unterminated {n},'.encode(),
        f'{email},"Closed" early {n}'.encode(),
        f'{email},Stray "quote" {n}'.encode(),
        f"{email},Jos\xe9 {n}".encode("latin-1"),
        f"{email},Nul\x00{n}".encode(),
        f"{email},Esc\x1b{n}".encode(),
        f"{email},{'L' * rng.randint(201, 120_000)}".encode(),
        f"{email},{'H' * rng.randint(131_073, 150_000)}".encode(),
        f"not-an-address-{n},Nobody".encode(),
        f"{email},Too,many,fields".encode(),
        f"{email},Spacey,has space".encode(),
        f"{email},Broken\rLine".encode(),
    ][kind]


def _good_subscriber_line(rng: random.Random, n: int) -> bytes:
    return rng.choice(
        [
            f"person{n}@example.com,Person {n},lb_{n}",
            f'"Person{n}@Example.org","Surname, Given {n}",',
            f'person{n}@example.net,"Quoted ""nick"" {n}",',
            f"person{n}@example.com,Zoë Ødegaard {n}",
            f"person{n}@example.com",
        ]
    ).encode()


def test_generated_file_every_line_accounted_for(warehouse: Warehouse, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    lines, bad, good = [b"email,name,listenbrainz_user"], [], 0
    for n in range(3000):
        if rng.random() < 0.3:
            lines.append(_bad_subscriber_line(rng, n))
            bad.append(len(lines))
        else:
            lines.append(_good_subscriber_line(rng, n))
            good += 1
    ending = rng.choice([b"\n", b"\r\n"])
    path = _file(tmp_path, "generated.csv", ending.join(lines) + ending)

    result = warehouse.imports("subscribers", path)
    assert result.code == 1
    assert result.bad_lines == bad  # each bad line reported once, in order, with its number
    assert warehouse.count(subscribers) == good
    assert f"{len(lines) - 1} rows: {good} subscribers added" in result.stdout
    again = warehouse.imports("subscribers", path)
    assert again.bad_lines == bad
    assert f"0 subscribers added, 0 updated, {good} unchanged" in again.stdout
    assert warehouse.count(subscribers) == good

    # The library of the subscribers who landed, addressed in any case, with bad lines mixed in.
    people = sorted(warehouse.emails())
    lib_lines, lib_bad, follows = [b"email,artist_mbid,artist_name"], [], set()
    for n in range(3000):
        person = rng.choice(people)
        mbid = _mbid(rng)
        if rng.random() < 0.3:
            lib_lines.append(
                rng.choice(
                    [
                        f"{person},{mbid[:-1]},Short id".encode(),
                        f"stranger{n}@example.com,{mbid},Nobody's".encode(),
                        f"{person},{mbid},".encode(),
                        f'{person},{mbid},"Open {n}'.encode(),
                        f"{person},{mbid},Caf\xe9".encode("latin-1"),
                        f"{person},{mbid},{'A' * 501}".encode(),
                        f"{person},{mbid},Nul\x00".encode(),
                    ]
                )
            )
            lib_bad.append(len(lib_lines))
        else:
            spelled = rng.choice([person, person.upper(), person.lower()])
            lib_lines.append(f'{spelled},{mbid},"Artist, {n}"'.encode())
            follows.add((person.lower(), mbid))
    library = _file(tmp_path, "library.csv", b"\n".join(lib_lines) + b"\n")
    result = warehouse.imports("library", library)
    assert result.code == 1
    assert result.bad_lines == lib_bad
    assert warehouse.count(library_artists) == len(follows)
    again = warehouse.imports("library", library)
    assert again.bad_lines == lib_bad and "0 follows added" in again.stdout
    assert warehouse.count(library_artists) == len(follows)

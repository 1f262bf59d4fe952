"""CSV imports of subscribers and libraries: validated line by line, written in bulk.

Every data line is accounted for: imported, or reported with its line number in the file (the
header is line 1) and the reason, while every good row still lands. Importing the same file twice
changes nothing the second time.

One line is one row. Our columns never legitimately hold a line break, so a quoted field is never
allowed to run on to the next line: an unterminated quote is an error at the line it starts, and
the lines after it are read as the rows they are (instead of vanishing into one long field).
Bytes that are not UTF-8, control characters (NUL included), over-long fields and stray quotes
reject that line only. A header that lacks a column or repeats one rejects the file at once.
E-mail addresses are one identity case-insensitively (``domain.rules.email_key``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    exists,
    literal,
    or_,
    select,
    text,
    true,
    update,
)

from musicbutler_pipeline.domain.preferences import (
    CSV_COLUMNS,
    PreferenceChanges,
    PreferenceError,
    parse_csv_columns,
)
from musicbutler_pipeline.domain.rules import (
    InvalidInput,
    email_key,
    normalize_email,
    normalize_mbid,
)
from musicbutler_pipeline.warehouse.dialect import UpsertInsert, upsert_insert
from musicbutler_pipeline.warehouse.preferences import apply_changes
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers
from musicbutler_pipeline.warehouse.subscribers import subscribers_by_address

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The longest value each column may hold, in characters. A name goes into the greeting and the
# To header of every digest: 200 is generous for a person and keeps a message its normal size.
MAX_LENGTH = {
    "email": 254,  # RFC 5321's limit for a path
    "name": 200,
    "listenbrainz_user": 128,
    "artist_mbid": 36,
    "artist_name": 500,  # MusicBrainz has a few very long artist names; none this long
}

# C0 and C1 control characters (NUL, CR, tab, escape, NEL...) and the Unicode line and paragraph
# separators: none belongs in an address, a name or an id, and each can break a header or add
# lines to a digest. PostgreSQL cannot even store NUL in text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_UNQUOTED = re.compile(r'[^",]*')


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    path: Path
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # Rows that were the same subscriber as an earlier row of the file (subscribers import).
    merged: int = 0
    # Subscribers whose preferences the optional columns changed (subscribers import).
    preferences_changed: int = 0
    errors: list[RowError] = field(default_factory=list)
    # Not errors: what the import did that the file may not have meant (two spellings of one
    # address, say). Reported, and the exit code stays 0.
    notes: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (missing, empty, or a header without our columns)."""


def _decode(raw: bytes) -> str:
    """The line as text, or raises ValueError naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
        raise ValueError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})") from None


def _line_problem(line: str) -> str | None:
    # A line the csv module would refuse (csv.field_size_limit, 131,072 by default) is no row of
    # ours whatever its fields; shorter ones are parsed, and the field that is too long is named.
    if len(line) > csv.field_size_limit():
        return (
            f"{len(line):,} characters, far longer than any valid row "
            f"(a name may have at most {MAX_LENGTH['name']} characters)"
        )
    if control := _CONTROL.search(line):
        return (
            f"control character U+{ord(control.group()):04X} at column {control.start() + 1} "
            "(not allowed in any field)"
        )
    return None


def _quote_problem(line: str) -> str:
    """What is wrong with the quoting of a line that is not valid CSV (RFC 4180)."""
    position, number = 0, 1
    while True:
        if line.startswith('"', position):
            quoted = _QUOTED.match(line, position)
            if quoted is None:
                return (
                    f"field {number}: unterminated quote (a quoted field must close on the line "
                    "it opens; no field may contain a line break)"
                )
            position = quoted.end()
            if position < len(line) and line[position] != ",":
                return f"field {number}: text after the closing quote"
        else:
            unquoted = _UNQUOTED.match(line, position)
            assert unquoted is not None  # the pattern matches the empty string
            position = unquoted.end()
            if line.startswith('"', position):
                if not line[unquoted.start() : position].strip():
                    return f"field {number}: space before the opening quote"
                return (
                    f"field {number}: a quote inside an unquoted field (quote the field and "
                    f'double the quote: "Ann ""Nan"" Lee")'
                )
        if position >= len(line):
            return "malformed quoting"
        position, number = position + 1, number + 1


def _fields(line: str) -> list[str]:
    """The fields of one line, or raises ValueError saying what is wrong with its quoting."""
    if '"' not in line:
        # Without quotes the csv module's reading is exactly this, and ten times slower.
        return line.split(",")
    try:
        fields = next(csv.reader((line,), strict=True))
    except csv.Error:
        raise ValueError(_quote_problem(line)) from None
    # The csv module accepts a quote in the middle of an unquoted field (ab"c); RFC 4180 does not,
    # and it is how a broken quote usually shows (a field closed early, text after it).
    if not _RECORD.fullmatch(line):
        raise ValueError(_quote_problem(line))
    return fields


_FIELD = r'(?:[^",]*|"(?:[^"]|"")*")'
_RECORD = re.compile(rf"{_FIELD}(?:,{_FIELD})*")


# Lines are read in blocks of about this many bytes. A block of plain lines (the usual file: UTF-8,
# no quotes, no control characters) is decoded, checked and split at once, which is most of what
# makes a large file fast; a block with anything unusual in it is read line by line as before.
_BLOCK_BYTES = 1 << 20
# What sends a block to the line-by-line reading: a control character other than the line feed
# that ends each line (a CR too, once each CRLF is a line feed), a line or paragraph separator.
_UNUSUAL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _blocks(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, the block's lines without their line ends) for the file."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot open ({exc.strerror})") from None
    number = 1
    with handle:
        while raws := handle.readlines(_BLOCK_BYTES):
            if number == 1 and raws[0].startswith(b"\xef\xbb\xbf"):
                raws[0] = raws[0][3:]
            yield number, [raw.removesuffix(b"\n").removesuffix(b"\r") for raw in raws]
            number += len(raws)


def _plain_lines(raws: list[bytes]) -> list[str] | None:
    """The block's lines as text if every line is plain (UTF-8, no control character, no line
    too long for the csv module), else None: then each line is read on its own."""
    try:
        text = b"\n".join(raws).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _UNUSUAL.search(text):
        return None
    lines = text.split("\n")
    if max(map(len, lines)) > csv.field_size_limit():
        return None
    return lines


def _header(
    path: Path, number: int, raw: bytes, required: tuple[str, ...], optional: tuple[str, ...]
) -> list[str]:
    expected = ",".join(required + optional)
    try:
        line = _decode(raw)
        if problem := _line_problem(line):
            raise ValueError(problem)
        names = [name.strip() for name in _fields(line)]
    except ValueError as exc:
        raise CsvFormatError(f"{path}: line {number} (the header): {exc}") from None
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise CsvFormatError(
                f"{path}: line {number}: column {name or '(unnamed)'!r} appears twice "
                f"(columns {seen[name]} and {position}; expected {expected})"
            )
        seen[name] = position
    missing = [column for column in required if column not in seen]
    if missing:
        raise CsvFormatError(
            f"{path}: line {number}: missing column(s) {', '.join(missing)} (expected {expected})"
        )
    return names


def _records(
    path: Path, wanted: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Iterator[tuple[int, list[str] | str]]:
    """(line number, the stripped values of the ``wanted`` columns in that order, "" for a column
    the file lacks or the line leaves out) for each data line, or (line number, what is wrong with
    it). ``wanted`` columns must be among the file's required and ``optional`` ones. Blank lines
    are no rows and are skipped."""
    header: list[str] | None = None
    positions: list[int] = []
    width = 0
    for first, raws in _blocks(path):
        if header is None:
            for offset, raw in enumerate(raws):
                if raw.strip():
                    required = tuple(column for column in wanted if column not in optional)
                    header = _header(path, first + offset, raw, required, optional)
                    width = len(header)
                    # A column the header lacks reads from one past the end: always "".
                    positions = [header.index(c) if c in header else width for c in wanted]
                    first, raws = first + offset + 1, raws[offset + 1 :]
                    break
            else:
                continue
        # The file's columns are the wanted ones in their order: each line's values as they are.
        in_order = positions == list(range(width))
        lines = _plain_lines(raws)
        for number, raw in enumerate(raws, start=first):
            if lines is None:
                if not raw.strip():
                    continue
                try:
                    line = _decode(raw)
                    if problem := _line_problem(line):
                        raise ValueError(problem)
                    values = _fields(line)
                except ValueError as exc:
                    yield number, str(exc)
                    continue
            else:
                line = lines[number - first]
                # A plain line holds no tab, CR or form feed: a blank one is spaces at most.
                if '"' in line:
                    try:
                        values = _fields(line)
                    except ValueError as exc:
                        yield number, str(exc)
                        continue
                else:
                    values = line.split(",")
                    if len(values) == 1 and not line.strip(" "):
                        continue
            if len(values) == width and in_order:
                yield number, list(map(str.strip, values))
                continue
            if len(values) > width:
                yield number, f"{len(values)} fields, expected {width}"
                continue
            values.extend([""] * (width + 1 - len(values)))
            yield number, [values[position].strip() for position in positions]
    if header is None:
        raise CsvFormatError(f"{path}: the file is empty (expected a header line)")


def _rows(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """As _records, each row as a dict by column name."""
    columns = required + optional
    for number, values in _records(path, columns, optional):
        yield number, values if isinstance(values, str) else dict(zip(columns, values, strict=True))


def _too_long(row: dict[str, str], columns: Iterable[str]) -> str | None:
    for column in columns:
        value = row.get(column, "")
        if len(value) > MAX_LENGTH[column]:
            return f"{column}: {len(value):,} characters, at most {MAX_LENGTH[column]}"
    return None


# --- Writing: a temporary staging table per import, filled in bulk, merged set-based -----------
#
# Each batch of validated rows is loaded into a temporary table (PostgreSQL COPY; SQLite one
# prepared INSERT run over the batch) and merged into the real table by a few set-based statements
# in one transaction, which commits before the next batch is read. A batch is STAGE_ROWS rows, so
# an import holds SQLite's write lock for one batch at a time (well under a second), never for the
# whole file: a daily run beside it waits at most one batch. What a reader sees mid-import is a
# prefix of the file, each batch whole; every statement is idempotent, so an import that stops
# half-way (crash, Ctrl-C) is completed by importing the same file again.

STAGE_ROWS = 50_000
# Bytes psycopg2 reads from the text and sends to COPY at a time (its default is 8 KiB).
_COPY_CHUNK = 1 << 20

_staging = MetaData()
# Staging tables are TEMPORARY: private to the import's connection, dropped with it, and not part
# of the warehouse schema (they live in their own MetaData, never migrated).
library_stage = Table(
    "import_library_stage",
    _staging,
    Column("subscriber_id", BigInteger, nullable=False),
    Column("artist_mbid", Text, nullable=False),
    Column("artist_name", Text, nullable=False),
    prefixes=["TEMPORARY"],
)
subscriber_stage = Table(
    "import_subscriber_stage",
    _staging,
    Column("line", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("email_key", Text, nullable=False),
    Column("name", Text),
    Column("listenbrainz_user", Text),
    prefixes=["TEMPORARY"],
)


def _copy_text(value: object) -> str:
    # COPY's text format: only the backslash needs escaping here, because validated values never
    # hold a tab, a line break or any other control character (_CONTROL rejects the line).
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\")


def _load_stage(
    connection: Connection,
    stage: Table,
    rows: Sequence[Sequence[object]],
    *,
    copy_text: Callable[[], str] | None = None,
) -> None:
    """Put ``rows`` (tuples in the stage's column order) into the empty staging table.

    Straight to the driver: COPY on PostgreSQL; on SQLite one prepared INSERT run over the batch
    (SQLAlchemy's per-row parameter processing was most of the load's time, and these are plain
    ints and strings that need none). ``copy_text``: the rows in COPY's text format, faster
    than the general formatting here when a stage's columns are known (no NULL, say)."""
    if not rows:
        return
    names = ", ".join(column.name for column in stage.columns)
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            if copy_text is not None:
                data = copy_text()
            else:
                data = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
            cursor.copy_expert(  # type: ignore[attr-defined]
                f"COPY {stage.name} ({names}) FROM STDIN", io.StringIO(data), size=_COPY_CHUNK
            )
        else:
            marks = ", ".join("?" for _ in stage.columns)
            cursor.executemany(f"INSERT INTO {stage.name} ({names}) VALUES ({marks})", rows)
    finally:
        cursor.close()


@contextmanager
def _staged(engine: Engine, stage: Table) -> Iterator[Connection]:
    """A connection holding an empty temporary ``stage``; it is dropped at the end."""
    with engine.connect() as connection:
        cache_size = None
        if connection.dialect.name == "sqlite":
            # SQLite's default page cache is 2 MB: the artist index, written at random places,
            # would be read back from disk for nearly every row of a large library (measured:
            # 64 MB made a 200,000-row import 1.5 times as fast). Restored at the end.
            cache_size = connection.exec_driver_sql("PRAGMA cache_size").scalar()
            connection.exec_driver_sql("PRAGMA cache_size = -65536")
            connection.commit()
        with connection.begin():
            stage.create(connection)
        try:
            yield connection
        finally:
            if connection.in_transaction():
                connection.rollback()
            with connection.begin():
                stage.drop(connection)
            if cache_size is not None:
                connection.exec_driver_sql(f"PRAGMA cache_size = {int(cache_size)}")
                connection.commit()


def _clear_stage(connection: Connection, stage: Table) -> None:
    # On PostgreSQL a DELETE would leave every row dead in the temporary table (autovacuum never
    # visits those), and each later batch would scan all of them again. SQLite's unqualified
    # DELETE is already a truncation.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"TRUNCATE {stage.name}"))
    else:
        connection.execute(delete(stage))


# --- Subscribers -------------------------------------------------------------------------------


# The optional columns of a subscribers file, each with the check its (stripped, non-empty) value
# must pass: a message saying what is wrong, or None. Adding a column is one entry here, one in
# subscriber_stage and one in the merge statements of _write_subscribers.
def _listenbrainz_user_problem(value: str) -> str | None:
    if any(ch.isspace() for ch in value):
        return f"{value!r} is not a user name"
    return None


SUBSCRIBER_OPTIONAL: dict[str, Callable[[str], str | None]] = {
    "name": lambda value: None,
    "listenbrainz_user": _listenbrainz_user_problem,
}


@dataclass(slots=True)
class _Subscriber:
    line: int
    email: str
    key: str
    values: dict[str, str | None]


def import_subscribers(engine: Engine, path: Path) -> ImportReport:
    """Upsert subscribers by address, case-insensitively (columns ``email,name,listenbrainz_user``,
    and the optional preference columns ``domain.preferences.CSV_COLUMNS``).

    A new address is stored as first given; an existing subscriber keeps the spelling it has and
    gets the row's name and ListenBrainz user. Rows of one file with the same address in any case
    are one subscriber: the later row's name and ListenBrainz user win, and a note says so. An
    unsubscribed subscriber stays unsubscribed (a re-import must never opt anybody back in).
    """
    optional = tuple(SUBSCRIBER_OPTIONAL)
    report = ImportReport(path)
    # The whole file's subscribers, by identity: a later row of the same address must win, so
    # nothing can be written before the file is read (one entry per subscriber, not per line).
    valid: dict[str, _Subscriber] = {}
    preference_changes: dict[str, PreferenceChanges] = {}
    for line, row in _rows(path, ("email",), (*optional, *CSV_COLUMNS)):
        report.rows += 1
        if isinstance(row, str):
            report.errors.append(RowError(line, row))
            continue
        if problem := _too_long(row, ("email", *optional)):
            report.errors.append(RowError(line, problem))
            continue
        try:
            email = normalize_email(row["email"])
        except InvalidInput as exc:
            report.errors.append(RowError(line, f"email: {exc}"))
            continue
        values: dict[str, str | None] = {}
        problem = None
        for column, check in SUBSCRIBER_OPTIONAL.items():
            value = row.get(column) or None
            if value is not None and (problem := check(value)):
                problem = f"{column}: {problem}"
                break
            values[column] = value
        if problem:
            report.errors.append(RowError(line, problem))
            continue
        try:
            changes = parse_csv_columns(row)
        except PreferenceError as exc:
            report.errors.append(RowError(line, str(exc)))
            continue
        key = email_key(email)
        if changes is not None:
            preference_changes[key] = changes
        item = _Subscriber(line, email, key, values)
        if (first := valid.get(key)) is not None:
            report.merged += 1
            report.notes.append(
                RowError(
                    line,
                    f"{email} is the same subscriber as line {first.line} ({first.email}): "
                    "addresses are case-insensitive; this row's name and listenbrainz_user "
                    "are kept",
                )
            )
            item.line, item.email = first.line, first.email
        valid[key] = item

    _write_subscribers(engine, report, list(valid.values()))
    if preference_changes:
        with engine.begin() as connection:
            ids = {
                key: subscriber.id
                for key, subscriber in subscribers_by_address(
                    connection, preference_changes
                ).items()
            }
            report.preferences_changed = apply_changes(
                connection,
                {ids[key]: change for key, change in preference_changes.items() if key in ids},
            )
    report.notes.sort(key=lambda note: note.line)
    _log(report, "subscribers")
    return report


def _write_subscribers(engine: Engine, report: ImportReport, items: list[_Subscriber]) -> None:
    now = datetime.now(UTC)
    stage = subscriber_stage
    key_matches = subscribers.c.email_key == stage.c.email_key
    changed = or_(
        subscribers.c.name.is_distinct_from(stage.c.name),
        subscribers.c.listenbrainz_user.is_distinct_from(stage.c.listenbrainz_user),
    )
    with _staged(engine, stage) as connection:
        for chunk in _batched(items, STAGE_ROWS):
            with connection.begin():
                _load_stage(
                    connection,
                    stage,
                    [
                        (
                            item.line,
                            item.email,
                            item.key,
                            item.values["name"],
                            item.values["listenbrainz_user"],
                        )
                        for item in chunk
                    ],
                )
                for line, email, stored in connection.execute(
                    select(stage.c.line, stage.c.email, subscribers.c.email).where(
                        key_matches, subscribers.c.email != stage.c.email
                    )
                ):
                    report.notes.append(
                        RowError(
                            line,
                            f"{email} is subscriber {stored} "
                            "(addresses are case-insensitive; the stored spelling is kept)",
                        )
                    )
                updated = connection.execute(
                    update(subscribers)
                    .where(key_matches, changed)
                    .values(
                        name=stage.c.name,
                        listenbrainz_user=stage.c.listenbrainz_user,
                        updated_at=now,
                    )
                ).rowcount
                # A concurrent import of the same address wins; this row then counts unchanged.
                new = (
                    select(
                        stage.c.email,
                        stage.c.email_key,
                        stage.c.name,
                        stage.c.listenbrainz_user,
                        _timestamp(now),
                        _timestamp(now),
                    )
                    .where(~exists().where(key_matches))
                    .order_by(stage.c.line)
                )
                inserted = connection.execute(
                    upsert_insert(connection, subscribers)
                    .from_select(
                        [
                            "email",
                            "email_key",
                            "name",
                            "listenbrainz_user",
                            "subscribed_at",
                            "updated_at",
                        ],
                        new,
                    )
                    .on_conflict_do_nothing(index_elements=["email_key"])
                ).rowcount
                _clear_stage(connection, stage)
            report.inserted += inserted
            report.updated += updated
            report.unchanged += len(chunk) - inserted - updated


def _timestamp(moment: datetime) -> ColumnElement[datetime]:
    return literal(moment, type_=subscribers.c.updated_at.type)


# --- Libraries ---------------------------------------------------------------------------------

_CACHE = 1 << 17  # distinct addresses (or artists) remembered while validating: ~20 MB at most


def import_library(engine: Engine, path: Path, *, source: str = "csv") -> ImportReport:
    """Add followed artists (columns ``email,artist_mbid,artist_name``), each to the subscriber
    whose address matches case-insensitively. A follow that is already current is left as it is.

    The file is streamed: memory holds one batch (STAGE_ROWS rows), whatever the file's size.
    """
    columns = ("email", "artist_mbid", "artist_name")
    email_limit, name_limit = MAX_LENGTH["email"], MAX_LENGTH["artist_name"]
    report = ImportReport(path)
    # A subscriber's follows repeat their address, and popular artists repeat across subscribers:
    # normalizing each distinct value once is most of what makes validation fast. Each cache maps
    # the value as written to its normal form, or to the error message (a str, not a tuple).
    addresses: dict[str, tuple[str, str] | str] = {}
    artists: dict[str, tuple[str] | str] = {}
    # (email_key, mbid) -> the staged row; a later line of the same follow replaces the earlier.
    batch: dict[tuple[str, str], tuple[int, str, str, str, str]] = {}
    # Lines whose follow a later line of the batch replaced: reported too if the address is unknown.
    shadowed: list[tuple[int, str, str]] = []
    errors = report.errors
    with _staged(engine, library_stage) as connection:
        for line, values in _records(path, columns, ()):
            report.rows += 1
            if isinstance(values, str):
                errors.append(RowError(line, values))
                continue
            raw_email, raw_mbid, name = values
            if len(raw_email) > email_limit:
                errors.append(
                    RowError(line, f"email: {len(raw_email):,} characters, at most {email_limit}")
                )
                continue
            if len(name) > name_limit:
                errors.append(
                    RowError(line, f"artist_name: {len(name):,} characters, at most {name_limit}")
                )
                continue
            if (address := addresses.get(raw_email)) is None:
                address = _cached(addresses, raw_email, _address(raw_email))
            if isinstance(address, str):
                errors.append(RowError(line, address))
                continue
            if (artist := artists.get(raw_mbid)) is None:
                artist = _cached(artists, raw_mbid, _artist(raw_mbid))
            if isinstance(artist, str):
                errors.append(RowError(line, artist))
                continue
            if not name:
                errors.append(RowError(line, "artist_name: empty"))
                continue
            email, key = address
            follow = (key, artist[0])
            if (earlier := batch.pop(follow, None)) is not None:
                shadowed.append((earlier[0], earlier[1], key))
            batch[follow] = (line, email, key, artist[0], name)
            if len(batch) >= STAGE_ROWS:
                _write_follows(connection, report, batch, shadowed, source)
        _write_follows(connection, report, batch, shadowed, source)
    report.errors.sort(key=lambda error: error.line)
    _log(report, "follows")
    return report


def _cached(cache: dict[str, T], value: str, result: T) -> T:
    # A file of more distinct values than this is rare; forgetting them all keeps memory bounded.
    if len(cache) >= _CACHE:
        cache.clear()
    cache[value] = result
    return result


def _address(value: str) -> tuple[str, str] | str:
    """(the address, its email_key), or what is wrong with it."""
    try:
        email = normalize_email(value)
    except InvalidInput as exc:
        return f"email: {exc}"
    return email, email_key(email)


def _artist(value: str) -> tuple[str] | str:
    """(the MusicBrainz identifier,), or what is wrong with it."""
    try:
        return (normalize_mbid(value),)
    except InvalidInput as exc:
        return f"artist_mbid: {exc}"


def _write_follows(
    connection: Connection,
    report: ImportReport,
    batch: dict[tuple[str, str], tuple[int, str, str, str, str]],
    shadowed: list[tuple[int, str, str]],
    source: str,
) -> None:
    """Merge one batch of follows in one transaction, then empty ``batch`` and ``shadowed``."""
    if not batch:
        return
    stage = library_stage
    with connection.begin():
        # One look-up of the batch's distinct addresses (a few hundred for 50,000 follows) instead
        # of a join per row: the staged rows then carry the subscriber's id, not two addresses.
        ids = {
            key: subscriber.id
            for key, subscriber in subscribers_by_address(
                connection, {email for _line, email, _key, _mbid, _name in batch.values()}
            ).items()
        }
        follows: list[tuple[int, str, str]] = []
        unknown: list[tuple[int, str]] = []
        for line, email, key, mbid, name in batch.values():
            if (subscriber_id := ids.get(key)) is None:
                unknown.append((line, email))
            else:
                follows.append((subscriber_id, mbid, name))
        # By subscriber, the unique index's first column: each subscriber's follows then go to
        # the same few index pages instead of pages at random (measured on PostgreSQL: the
        # INSERT took half the time). By id alone: a file is mostly in subscriber order already,
        # which makes this sort, and the INSERT's own below, a pass over sorted input (sorting
        # by artist too cost more than it saved: string comparisons, in Python and under the
        # database's collation).
        follows.sort(key=itemgetter(0))
        _load_stage(connection, stage, follows, copy_text=lambda: _follows_copy_text(follows))
        new_follows = (
            select(
                stage.c.subscriber_id,
                stage.c.artist_mbid,
                stage.c.artist_name,
                literal(source, type_=library_artists.c.source.type),
                literal(datetime.now(UTC), type_=library_artists.c.followed_at.type),
            )
            # SQLite's parser reads ON CONFLICT after a bare SELECT as a join's ON: a WHERE
            # (always true) keeps them apart.
            .where(true())
            .order_by(stage.c.subscriber_id)
        )
        insert = upsert_insert(connection, library_artists).from_select(
            ["subscriber_id", "artist_mbid", "artist_name", "source", "followed_at"], new_follows
        )
        inserted = _insert_new_follows(connection, insert) if follows else 0
        _clear_stage(connection, stage)
    for line, email in unknown:
        report.errors.append(_no_subscriber(line, email))
    for line, email, key in shadowed:
        if key not in ids:
            report.errors.append(_no_subscriber(line, email))
    report.inserted += inserted
    report.unchanged += len(batch) - len(unknown) - inserted
    batch.clear()
    shadowed.clear()


def _follows_copy_text(follows: list[tuple[int, str, str]]) -> str:
    # No NULL to mark, and only a name can hold a backslash (validated values hold no tab, line
    # break or other control character): escaping the whole text at once escapes each name, as
    # the tabs and line feeds around it hold none. Three times as fast as _copy_text per value.
    text = "".join([f"{subscriber_id}\t{mbid}\t{name}\n" for subscriber_id, mbid, name in follows])
    return text.replace("\\", "\\\\")


def _insert_new_follows(connection: Connection, insert: UpsertInsert) -> int:
    """Run ``insert`` (the staged follows), skipping those already current; the number of rows
    it added.

    ON CONFLICT on the partial unique index is the "already current?" probe, one per staged row
    whatever the table's statistics say, and it also covers a follow a concurrent writer
    (another import, a ListenBrainz sync) commits meanwhile. An anti-join (NOT EXISTS) with
    hash and merge joins switched off was tried and left: planned on the statistics of a table
    that was empty when the import began, it took 89.6 s for 600,000 follows on PostgreSQL
    against 16.1 s for this (benchmarks/imports.py, same machine and load) once index 0014
    gave the planner a second index on artist_mbid to probe.
    """
    skip_conflicts = insert.on_conflict_do_nothing(
        index_elements=["subscriber_id", "artist_mbid"],
        index_where=text("unfollowed_on IS NULL"),
    )
    return connection.execute(skip_conflicts).rowcount


def _no_subscriber(line: int, email: str) -> RowError:
    return RowError(line, f"email: no subscriber {email!r} (import subscribers first)")


def _log(report: ImportReport, what: str) -> None:
    logger.info(
        "%s: %d rows, %d %s added, %d updated, %d unchanged, %d merged, %d bad",
        report.path,
        report.rows,
        report.inserted,
        what,
        report.updated,
        report.unchanged,
        report.merged,
        len(report.errors),
    )

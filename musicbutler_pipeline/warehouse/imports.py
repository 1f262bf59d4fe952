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
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, bindparam, select, text, update

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
from musicbutler_pipeline.warehouse.dialect import upsert_insert
from musicbutler_pipeline.warehouse.preferences import apply_changes
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers
from musicbutler_pipeline.warehouse.subscribers import subscribers_by_address

logger = logging.getLogger(__name__)

BATCH = 1000
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


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield number, raw.removesuffix(b"\n").removesuffix(b"\r")


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


def _rows(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, the row's stripped values by column) for each data line, or (line number,
    what is wrong with it). Blank lines are no rows and are skipped."""
    header: list[str] | None = None
    for number, raw in _lines(path):
        if not raw.strip():
            continue
        if header is None:
            header = _header(path, number, raw, required, optional)
            continue
        try:
            line = _decode(raw)
            if problem := _line_problem(line):
                raise ValueError(problem)
            values = _fields(line)
        except ValueError as exc:
            yield number, str(exc)
            continue
        if len(values) > len(header):
            yield number, f"{len(values)} fields, expected {len(header)}"
            continue
        row = dict.fromkeys(header, "")
        row.update(zip(header, (value.strip() for value in values), strict=False))
        yield number, row
    if header is None:
        raise CsvFormatError(f"{path}: the file is empty (expected a header line)")


def _too_long(row: dict[str, str], columns: Iterable[str]) -> str | None:
    for column in columns:
        value = row.get(column, "")
        if len(value) > MAX_LENGTH[column]:
            return f"{column}: {len(value):,} characters, at most {MAX_LENGTH[column]}"
    return None


@dataclass(slots=True)
class _Subscriber:
    line: int
    email: str
    key: str
    name: str | None
    listenbrainz_user: str | None


def import_subscribers(engine: Engine, path: Path) -> ImportReport:
    """Upsert subscribers by address, case-insensitively (columns ``email,name,listenbrainz_user``,
    and the optional preference columns ``domain.preferences.CSV_COLUMNS``).

    A new address is stored as first given; an existing subscriber keeps the spelling it has and
    gets the row's name and ListenBrainz user. Rows of one file with the same address in any case
    are one subscriber: the later row's name and ListenBrainz user win, and a note says so. An
    unsubscribed subscriber stays unsubscribed (a re-import must never opt anybody back in).
    """
    columns = ("email", "name", "listenbrainz_user")
    report = ImportReport(path)
    valid: dict[str, _Subscriber] = {}
    preference_changes: dict[str, PreferenceChanges] = {}
    for line, row in _rows(path, ("email",), ("name", "listenbrainz_user", *CSV_COLUMNS)):
        report.rows += 1
        if isinstance(row, str):
            report.errors.append(RowError(line, row))
            continue
        if problem := _too_long(row, columns):
            report.errors.append(RowError(line, problem))
            continue
        try:
            email = normalize_email(row["email"])
        except InvalidInput as exc:
            report.errors.append(RowError(line, f"email: {exc}"))
            continue
        lb_user = row.get("listenbrainz_user") or None
        if lb_user and any(ch.isspace() for ch in lb_user):
            report.errors.append(
                RowError(line, f"listenbrainz_user: {lb_user!r} is not a user name")
            )
            continue
        try:
            changes = parse_csv_columns(row)
        except PreferenceError as exc:
            report.errors.append(RowError(line, str(exc)))
            continue
        key = email_key(email)
        if changes is not None:
            preference_changes[key] = changes
        item = _Subscriber(line, email, key, row.get("name") or None, lb_user)
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

    now = datetime.now(UTC)
    with engine.begin() as connection:
        for chunk in _batched(valid.values(), BATCH):
            existing = {
                row.email_key: row
                for row in connection.execute(
                    select(
                        subscribers.c.id,
                        subscribers.c.email,
                        subscribers.c.email_key,
                        subscribers.c.name,
                        subscribers.c.listenbrainz_user,
                    ).where(subscribers.c.email_key.in_([item.key for item in chunk]))
                )
            }
            new = [item for item in chunk if item.key not in existing]
            changed = [
                item
                for item in chunk
                if item.key in existing
                and (existing[item.key].name, existing[item.key].listenbrainz_user)
                != (item.name, item.listenbrainz_user)
            ]
            for item in chunk:
                if item.key in existing and existing[item.key].email != item.email:
                    report.notes.append(
                        RowError(
                            item.line,
                            f"{item.email} is subscriber {existing[item.key].email} "
                            "(addresses are case-insensitive; the stored spelling is kept)",
                        )
                    )
            inserted = 0
            if new:
                # A concurrent import of the same address wins; this row then counts unchanged.
                statement = (
                    upsert_insert(connection, subscribers)
                    .on_conflict_do_nothing(index_elements=["email_key"])
                    .returning(subscribers.c.id)
                )
                result = connection.execute(
                    statement,
                    [
                        {
                            "email": item.email,
                            "email_key": item.key,
                            "name": item.name,
                            "listenbrainz_user": item.listenbrainz_user,
                            "subscribed_at": now,
                            "updated_at": now,
                        }
                        for item in new
                    ],
                )
                inserted = len(result.all())
            if changed:
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id == bindparam("match_id"))
                    .values(
                        name=bindparam("name"),
                        listenbrainz_user=bindparam("listenbrainz_user"),
                        updated_at=now,
                    ),
                    [
                        {
                            "match_id": existing[item.key].id,
                            "name": item.name,
                            "listenbrainz_user": item.listenbrainz_user,
                        }
                        for item in changed
                    ],
                )
            report.inserted += inserted
            report.updated += len(changed)
            report.unchanged += len(chunk) - inserted - len(changed)
        if preference_changes:
            ids = {
                key: subscriber.id
                for key, subscriber in subscribers_by_address(
                    connection, preference_changes
                ).items()
            }
            report.preferences_changed = apply_changes(
                connection, {ids[key]: change for key, change in preference_changes.items()}
            )
    report.notes.sort(key=lambda note: note.line)
    _log(report, "subscribers")
    return report


def import_library(engine: Engine, path: Path, *, source: str = "csv") -> ImportReport:
    """Add followed artists (columns ``email,artist_mbid,artist_name``), each to the subscriber
    whose address matches case-insensitively. A follow that is already current is left as it is."""
    columns = ("email", "artist_mbid", "artist_name")
    report = ImportReport(path)
    pending: list[tuple[int, str, str, str, str]] = []
    now = datetime.now(UTC)

    def flush(connection: Connection) -> None:
        ids: dict[str, int] = {
            key: subscriber_id
            for key, subscriber_id in connection.execute(
                select(subscribers.c.email_key, subscribers.c.id).where(
                    subscribers.c.email_key.in_({key for _, _, key, _, _ in pending})
                )
            )
        }
        rows = {}
        for line, email, key, mbid, name in pending:
            subscriber_id = ids.get(key)
            if subscriber_id is None:
                report.errors.append(
                    RowError(line, f"email: no subscriber {email!r} (import subscribers first)")
                )
                continue
            rows[(subscriber_id, mbid)] = {
                "subscriber_id": subscriber_id,
                "artist_mbid": mbid,
                "artist_name": name,
                "source": source,
                "followed_at": now,
            }
        pending.clear()
        if not rows:
            return
        # One cached statement run over the batch (SQLAlchemy's "insertmanyvalues"), not a
        # multi-row VALUES compiled anew per batch: that compilation was most of an import's time.
        # RETURNING counts what was inserted; executemany's rowcount is not reliable everywhere.
        statement = (
            upsert_insert(connection, library_artists)
            .on_conflict_do_nothing(
                index_elements=["subscriber_id", "artist_mbid"],
                index_where=text("unfollowed_on IS NULL"),
            )
            .returning(library_artists.c.id)
        )
        inserted = len(connection.execute(statement, list(rows.values())).all())
        report.inserted += inserted
        report.unchanged += len(rows) - inserted

    with engine.begin() as connection:
        for line, row in _rows(path, columns, ()):
            report.rows += 1
            if isinstance(row, str):
                report.errors.append(RowError(line, row))
                continue
            if problem := _too_long(row, ("email", "artist_name")):
                report.errors.append(RowError(line, problem))
                continue
            try:
                email = normalize_email(row["email"])
            except InvalidInput as exc:
                report.errors.append(RowError(line, f"email: {exc}"))
                continue
            try:
                mbid = normalize_mbid(row["artist_mbid"])
            except InvalidInput as exc:
                report.errors.append(RowError(line, f"artist_mbid: {exc}"))
                continue
            name = row.get("artist_name") or ""
            if not name:
                report.errors.append(RowError(line, "artist_name: empty"))
                continue
            pending.append((line, email, email_key(email), mbid, name))
            if len(pending) >= BATCH:
                flush(connection)
        if pending:
            flush(connection)
    report.errors.sort(key=lambda error: error.line)
    _log(report, "follows")
    return report


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

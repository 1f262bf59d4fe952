"""CSV imports of subscribers and libraries: validated row by row, written in bulk.

A bad row is reported with its line number in the file (the header is line 1) while every good
row still lands. Importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, bindparam, select, text, update

from musicbutler_pipeline.domain.rules import InvalidInput, normalize_email, normalize_mbid
from musicbutler_pipeline.warehouse.dialect import upsert_insert
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers

logger = logging.getLogger(__name__)

BATCH = 1000
T = TypeVar("T")


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
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (missing, not UTF-8, wrong header)."""


def _rows(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
        except UnicodeDecodeError:
            raise CsvFormatError(f"{path}: not UTF-8 text") from None
        except csv.Error as exc:
            raise CsvFormatError(f"{path}: line 1: {exc}") from None
        if header is None:
            raise CsvFormatError(f"{path}: the file is empty (expected a header line)")
        names = [name.strip() for name in header]
        missing = [column for column in required if column not in names]
        if missing:
            raise CsvFormatError(
                f"{path}: line 1: missing column(s) {', '.join(missing)} "
                f"(expected {','.join(required + optional)})"
            )
        reader.fieldnames = names
        next_line = 2
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise CsvFormatError(f"{path}: line {next_line}: not UTF-8 text") from None
            except csv.Error as exc:
                raise CsvFormatError(f"{path}: line {next_line}: {exc}") from None
            line, next_line = next_line, reader.line_num + 1
            if None in row:
                yield (
                    line,
                    {"__error__": f"{len(header) + len(row[None])} fields, expected {len(header)}"},
                )
                continue
            yield line, {key: (value or "").strip() for key, value in row.items()}


def import_subscribers(engine: Engine, path: Path) -> ImportReport:
    """Upsert subscribers by e-mail (columns ``email,name,listenbrainz_user``).

    An existing subscriber's name and ListenBrainz user are updated; an unsubscribed one stays
    unsubscribed (a re-import must never opt anybody back in).
    """
    report = ImportReport(path)
    valid: dict[str, dict[str, object]] = {}
    for line, row in _rows(path, ("email",), ("name", "listenbrainz_user")):
        report.rows += 1
        if "__error__" in row:
            report.errors.append(RowError(line, row["__error__"]))
            continue
        try:
            email = normalize_email(row["email"])
        except InvalidInput as exc:
            report.errors.append(RowError(line, f"email: {exc}"))
            continue
        lb_user = row.get("listenbrainz_user") or None
        if lb_user and (len(lb_user) > 128 or any(ch.isspace() for ch in lb_user)):
            report.errors.append(
                RowError(line, f"listenbrainz_user: {lb_user!r} is not a user name")
            )
            continue
        valid[email] = {
            "email": email,
            "name": row.get("name") or None,
            "listenbrainz_user": lb_user,
        }

    now = datetime.now(UTC)
    with engine.begin() as connection:
        for chunk in _batched(valid.values(), BATCH):
            existing = {
                row.email: row
                for row in connection.execute(
                    select(
                        subscribers.c.email, subscribers.c.name, subscribers.c.listenbrainz_user
                    ).where(subscribers.c.email.in_([item["email"] for item in chunk]))
                )
            }
            new = [item for item in chunk if item["email"] not in existing]
            changed = [
                item
                for item in chunk
                if item["email"] in existing
                and (existing[item["email"]].name, existing[item["email"]].listenbrainz_user)
                != (item["name"], item["listenbrainz_user"])
            ]
            if new:
                connection.execute(
                    subscribers.insert(),
                    [{**item, "subscribed_at": now, "updated_at": now} for item in new],
                )
            if changed:
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.email == bindparam("match_email"))
                    .values(
                        name=bindparam("name"),
                        listenbrainz_user=bindparam("listenbrainz_user"),
                        updated_at=now,
                    ),
                    [
                        {
                            "match_email": item["email"],
                            "name": item["name"],
                            "listenbrainz_user": item["listenbrainz_user"],
                        }
                        for item in changed
                    ],
                )
            report.inserted += len(new)
            report.updated += len(changed)
            report.unchanged += len(chunk) - len(new) - len(changed)
    _log(report, "subscribers")
    return report


def import_library(engine: Engine, path: Path, *, source: str = "csv") -> ImportReport:
    """Add followed artists (columns ``email,artist_mbid,artist_name``). A follow that is
    already current is left as it is."""
    report = ImportReport(path)
    pending: list[tuple[int, str, str, str]] = []
    now = datetime.now(UTC)

    def flush(connection: Connection) -> None:
        ids = dict(
            connection.execute(
                select(subscribers.c.email, subscribers.c.id).where(
                    subscribers.c.email.in_({email for _, email, _, _ in pending})
                )
            ).all()
        )
        rows = {}
        for line, email, mbid, name in pending:
            subscriber_id = ids.get(email)
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
        statement = upsert_insert(connection, library_artists).values(list(rows.values()))
        result = connection.execute(
            statement.on_conflict_do_nothing(
                index_elements=["subscriber_id", "artist_mbid"],
                index_where=text("unfollowed_on IS NULL"),
            )
        )
        report.inserted += result.rowcount
        report.unchanged += len(rows) - result.rowcount

    with engine.begin() as connection:
        for line, row in _rows(path, ("email", "artist_mbid", "artist_name"), ()):
            report.rows += 1
            if "__error__" in row:
                report.errors.append(RowError(line, row["__error__"]))
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
            pending.append((line, email, mbid, name))
            if len(pending) >= BATCH:
                flush(connection)
        if pending:
            flush(connection)
    report.errors.sort(key=lambda error: error.line)
    _log(report, "follows")
    return report


def _log(report: ImportReport, what: str) -> None:
    logger.info(
        "%s: %d rows, %d %s added, %d updated, %d unchanged, %d bad",
        report.path,
        report.rows,
        report.inserted,
        what,
        report.updated,
        report.unchanged,
        len(report.errors),
    )

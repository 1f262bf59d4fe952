"""The pure rules of the day: exact dates, identifiers, addresses and the digest subject."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import date

_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Characters that are layout, not text: C0 and C1 controls (tab, line feed and carriage return
# among them), DEL, and the Unicode line and paragraph separators. str.splitlines() breaks a line
# at many of them. A run of them, with the spaces around it, stands for one space.
_LAYOUT_RUN = re.compile(r"[ ]*[\x00-\x1f\x7f-\x9f\u2028\u2029][\x00-\x1f\x7f-\x9f\u2028\u2029 ]*")
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
ELLIPSIS = "\u2026"
# Deliberately pragmatic: one @, a non-empty local part without spaces, a dotted domain of
# letters, digits and hyphens. Full RFC 5322 syntax admits addresses no mail server delivers to.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


# Spelled out rather than strftime("%B"), which follows the process locale.
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


class InvalidInput(ValueError):
    """A value from outside (CSV cell, API field, command-line argument) is malformed."""


def exact_release_date(first_release_date: str | None) -> date | None:
    """The calendar date of a MusicBrainz ``first-release-date``, or None when it is not exact.

    Partial dates (``2026``, ``2026-11``), empty values and impossible dates (``2026-02-30``)
    never count as a release on a particular day.
    """
    if not first_release_date or not _FULL_DATE.match(first_release_date):
        return None
    try:
        return date.fromisoformat(first_release_date)
    except ValueError:
        return None


def parse_partition_date(value: str, *, latest: date | None = None) -> date:
    """A ``YYYY-MM-DD`` partition key, refused when malformed or after ``latest``."""
    if not _FULL_DATE.match(value or ""):
        raise InvalidInput(f"date {value!r} is not in the form YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"date {value!r} is not a calendar date ({exc})") from None
    if latest is not None and day > latest:
        raise InvalidInput(
            f"date {value} is in the future: the latest day that can be run is {latest.isoformat()}"
        )
    return day


def normalize_mbid(value: str) -> str:
    """A MusicBrainz identifier in canonical lower-case hyphenated form, or InvalidInput."""
    text = (value or "").strip()
    if _CANONICAL_UUID.fullmatch(text):
        # The usual case, several times faster than parsing: the form uuid.UUID would print.
        return text.lower()
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a MusicBrainz identifier (a UUID)") from None
    if str(parsed) != text.lower():
        # uuid.UUID accepts braces, URNs and missing hyphens; MusicBrainz identifiers have none.
        raise InvalidInput(f"{value!r} is not a MusicBrainz identifier (a UUID)")
    return str(parsed)


def normalize_email(value: str) -> str:
    """An address with surrounding space removed and the domain lower-cased, or InvalidInput."""
    text = (value or "").strip()
    if not _EMAIL.match(text) or ".." in text:
        raise InvalidInput(f"{value!r} is not a valid e-mail address")
    local, domain = text.rsplit("@", 1)
    if len(local) > 64 or len(text) > 254 or local.startswith(".") or local.endswith("."):
        raise InvalidInput(f"{value!r} is not a valid e-mail address")
    return f"{local}@{domain.lower()}"


def one_line(text: str) -> str:
    """``text`` with every run of control characters and line or paragraph separators (and the
    spaces around it) replaced by one space: data that can never add a line or split a header."""
    return _LAYOUT_RUN.sub(" ", text)


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (which ``json.loads`` accepts from a ``\\ud800``
    escape, and which no UTF-8 database or message can hold), or None."""
    found = _LONE_SURROGATE.search(text)
    return found.group() if found else None


def without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as a UTF-8 decoder would."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def shorten(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 1`` characters
    and an ellipsis (never ending in a dangling combining mark)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut.rstrip() + ELLIPSIS


def email_key(address: str) -> str:
    """The identity of a mailbox: the whole address case-folded and NFC-normalised.

    RFC 5321 lets a server treat the local part as case-sensitive, but no real mailbox provider
    does, and people type their address in whatever case: ``Alice@``, ``alice@`` and ``ALICE@``
    are one person. The address is stored as given; this key is what is unique and matched on.
    """
    folded = unicodedata.normalize("NFC", address.strip()).casefold()
    return unicodedata.normalize("NFC", folded)


def digest_subject(partition_date: date) -> str:
    """``New Music for November 23, 2026``: month name, day without a leading zero, year."""
    month = _MONTHS[partition_date.month - 1]
    return f"New Music for {month} {partition_date.day}, {partition_date.year}"


def weekly_digest_subject(first_day: date) -> str:
    """``New Music for the week of November 16, 2026``: the first day the weekly digest covers."""
    month = _MONTHS[first_day.month - 1]
    return f"New Music for the week of {month} {first_day.day}, {first_day.year}"

"""A subscriber's preferences: which release types, appearances, blocked artists, how often.

Pure: parsing and validation only. The warehouse keeps them (warehouse/preferences.py) and
user_drops applies them (warehouse/drops.py::replace_drops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum

from musicbutler_pipeline.domain.rules import InvalidInput, normalize_mbid, shorten


class PreferenceError(ValueError):
    """A preference value that is not one of the allowed ones; the message is one line."""


class ReleaseType(StrEnum):
    """What a release group's kinds are filtered by. MusicBrainz primary types Album, Single and
    EP; primary types Broadcast and Other (radio shows, podcasts, interviews, audiobooks) are
    ``broadcast``; its secondary types Compilation, Live and Remix; every other kind (no primary
    type; secondary Soundtrack, DJ-mix, Demo, ...) is ``other``."""

    ALBUM = "album"
    SINGLE = "single"
    EP = "ep"
    COMPILATION = "compilation"
    LIVE = "live"
    REMIX = "remix"
    OTHER = "other"
    BROADCAST = "broadcast"


# Primary and secondary MusicBrainz type names (lower case) that have a kind of their own.
PRIMARY_KINDS = {
    "album": ReleaseType.ALBUM,
    "single": ReleaseType.SINGLE,
    "ep": ReleaseType.EP,
    "broadcast": ReleaseType.BROADCAST,
    "other": ReleaseType.BROADCAST,
}
SECONDARY_KINDS = {
    "compilation": ReleaseType.COMPILATION,
    "live": ReleaseType.LIVE,
    "remix": ReleaseType.REMIX,
}

ALL_RELEASE_TYPES = frozenset(ReleaseType)
# What a subscriber who never chose gets: what was announced before preferences existed. Not
# broadcasts: the daily search fetches them only when someone selects them (docs/preferences.md).
DEFAULT_RELEASE_TYPES = ALL_RELEASE_TYPES - {ReleaseType.BROADCAST}
# Values shown in an error message are cut to this: a form field or CSV cell can be long.
_SHOWN_VALUE = 60


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAYS_PER_WEEK = 7


def release_kinds(primary_type: str | None, secondary_types: tuple[str, ...]) -> frozenset[str]:
    """The kinds of a release group: its primary type's and each secondary type's."""
    kinds = {PRIMARY_KINDS.get((primary_type or "").strip().lower(), ReleaseType.OTHER)}
    kinds.update(
        SECONDARY_KINDS.get(name.strip().lower(), ReleaseType.OTHER) for name in secondary_types
    )
    return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class Preferences:
    """Defaults are what was announced before preferences existed: every type but broadcasts
    (the MusicBrainz query decides what is fetched), appearances included, daily."""

    release_types: frozenset[ReleaseType] = DEFAULT_RELEASE_TYPES
    appearances: bool = True
    frequency: Frequency = Frequency.DAILY
    weekday: str | None = None  # one of WEEKDAYS; set exactly when frequency is weekly
    blocked_artists: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.release_types:
            raise PreferenceError("release types: at least one is needed")
        if self.frequency is Frequency.WEEKLY and self.weekday not in WEEKDAYS:
            raise PreferenceError("frequency weekly needs a weekday (monday..sunday)")
        if self.frequency is Frequency.DAILY and self.weekday is not None:
            raise PreferenceError("weekday is only for frequency weekly")

    def announces(self, primary_type: str | None, secondary_types: tuple[str, ...]) -> bool:
        """A release group counts when every one of its kinds is selected."""
        return release_kinds(primary_type, secondary_types) <= self.release_types

    def sends_on(self, day: date) -> bool:
        return self.frequency is Frequency.DAILY or WEEKDAYS[day.weekday()] == self.weekday

    def with_changes(
        self,
        *,
        release_types: frozenset[ReleaseType] | None = None,
        appearances: bool | None = None,
        frequency: Frequency | None = None,
        weekday: str | None = None,
        block: frozenset[str] = frozenset(),
        unblock: frozenset[str] = frozenset(),
    ) -> Preferences:
        """These preferences with the given changes; frequency daily drops the weekday, a weekday
        alone keeps (or makes) the frequency weekly."""
        new_frequency = frequency or (Frequency.WEEKLY if weekday else self.frequency)
        new_weekday = weekday or self.weekday
        if new_frequency is Frequency.DAILY:
            if weekday is not None:
                raise PreferenceError("weekday is only for frequency weekly")
            new_weekday = None
        return replace(
            self,
            release_types=self.release_types if release_types is None else release_types,
            appearances=self.appearances if appearances is None else appearances,
            frequency=new_frequency,
            weekday=new_weekday,
            blocked_artists=(self.blocked_artists | block) - unblock,
        )

    def describe(self) -> list[str]:
        """Lines for a person: ``types: album, single``, ``frequency: weekly on friday``."""
        types = ", ".join(t.value for t in ReleaseType if t in self.release_types)
        frequency = f"weekly on {self.weekday}" if self.frequency is Frequency.WEEKLY else "daily"
        blocked = ", ".join(sorted(self.blocked_artists)) or "none"
        return [
            f"types: {types}",
            f"appearances: {'on' if self.appearances else 'off'}",
            f"frequency: {frequency}",
            f"blocked artists: {blocked}",
        ]


def shown(text: str) -> str:
    """``repr(text)``, cut short: how a bad value is quoted in a one-line error."""
    return repr(shorten(text, _SHOWN_VALUE))


def parse_release_types(text: str) -> frozenset[ReleaseType]:
    """``album,single,EP`` (any case, spaces allowed) -> the set. ``all`` is every type
    (broadcasts included) and ``default`` what a subscriber who never chose gets, each usable
    among the others: ``default,broadcast``."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise PreferenceError(
            f"types {shown(text)}: name at least one of {', '.join(t.value for t in ReleaseType)}"
        )
    groups = {"all": ALL_RELEASE_TYPES, "default": DEFAULT_RELEASE_TYPES}
    allowed = {t.value for t in ReleaseType}
    unknown = [name for name in names if name not in allowed and name not in groups]
    if unknown:
        raise PreferenceError(
            f"types {shown(text)}: {shown(unknown[0])} is not one of "
            f"{', '.join(t.value for t in ReleaseType)} (or all, default)"
        )
    return frozenset(
        kind
        for name in names
        for kind in (groups[name] if name in groups else (ReleaseType(name),))
    )


def parse_on_off(text: str, what: str = "appearances") -> bool:
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise PreferenceError(f"{what} {shown(text)}: use on or off")


def parse_frequency(text: str) -> Frequency:
    value = text.strip().lower()
    try:
        return Frequency(value)
    except ValueError:
        raise PreferenceError(f"frequency {shown(text)}: use daily or weekly") from None


def parse_weekday(text: str) -> str:
    value = text.strip().lower()
    if value not in WEEKDAYS:
        raise PreferenceError(f"weekday {shown(text)}: use one of monday..sunday")
    return value


def parse_artist_mbid(text: str) -> str:
    try:
        return normalize_mbid(text)
    except InvalidInput:
        raise PreferenceError(
            f"artist MBID {shown(text)}: not a MusicBrainz identifier (a UUID)"
        ) from None


def parse_artist_mbids(text: str) -> frozenset[str]:
    """Space-, comma- or semicolon-separated MBIDs (a CSV cell)."""
    return frozenset(parse_artist_mbid(part) for part in re.split(r"[\s,;]+", text) if part)


# Optional columns of `subscribers import`, each parsed as the CLI option of the same meaning.
CSV_COLUMNS = ("types", "appearances", "frequency", "weekday", "blocked_artists")


@dataclass(frozen=True, slots=True)
class PreferenceChanges:
    """What one CSV row (or one command) changes; None: left as it is."""

    release_types: frozenset[ReleaseType] | None = None
    appearances: bool | None = None
    frequency: Frequency | None = None
    weekday: str | None = None
    block: frozenset[str] = frozenset()

    def applied_to(self, preferences: Preferences) -> Preferences:
        return preferences.with_changes(
            release_types=self.release_types,
            appearances=self.appearances,
            frequency=self.frequency,
            weekday=self.weekday,
            block=self.block,
        )


def parse_csv_columns(row: dict[str, str]) -> PreferenceChanges | None:
    """The preference columns of one `subscribers import` row (blank cells change nothing), or
    None when it has none. Raises ``PreferenceError`` naming the column and the value. A file
    stands on its own: frequency weekly needs the row's weekday, and daily takes none."""
    cells = {column: row.get(column, "").strip() for column in CSV_COLUMNS}
    if not any(cells.values()):
        return None
    frequency = parse_frequency(cells["frequency"]) if cells["frequency"] else None
    weekday = parse_weekday(cells["weekday"]) if cells["weekday"] else None
    if frequency is Frequency.WEEKLY and weekday is None:
        raise PreferenceError("frequency weekly needs a weekday (monday..sunday)")
    if frequency is Frequency.DAILY and weekday is not None:
        raise PreferenceError(f"weekday {weekday!r}: only for frequency weekly")
    return PreferenceChanges(
        release_types=parse_release_types(cells["types"]) if cells["types"] else None,
        appearances=parse_on_off(cells["appearances"]) if cells["appearances"] else None,
        frequency=frequency,
        weekday=weekday,
        block=parse_artist_mbids(cells["blocked_artists"]),
    )


def week_start(day: date) -> date:
    """The first day a weekly digest sent on ``day`` covers: ``day`` - 6."""
    return day - timedelta(days=DAYS_PER_WEEK - 1)

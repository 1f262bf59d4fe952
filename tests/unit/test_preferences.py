"""The preference rules: release kinds, validation with one-line errors, the weekly window."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.domain.preferences import (
    ALL_RELEASE_TYPES,
    DEFAULT_RELEASE_TYPES,
    Frequency,
    PreferenceError,
    Preferences,
    ReleaseType,
    parse_csv_columns,
    parse_on_off,
    parse_release_types,
    release_kinds,
    week_start,
)
from musicbutler_pipeline.domain.rules import weekly_digest_subject

A, S, E, C, L, R, OTHER, B = (
    ReleaseType.ALBUM, ReleaseType.SINGLE, ReleaseType.EP, ReleaseType.COMPILATION,
    ReleaseType.LIVE, ReleaseType.REMIX, ReleaseType.OTHER, ReleaseType.BROADCAST,
)  # fmt: skip


@pytest.mark.parametrize(
    ("primary", "secondary", "kinds"),
    [
        ("Album", (), {A}),
        ("Album", ("Live",), {A, L}),
        ("EP", ("Remix", "Compilation"), {E, R, C}),
        ("Single", ("Soundtrack",), {S, OTHER}),
        ("Broadcast", (), {B}),
        ("Other", ("Interview",), {B, OTHER}),
        ("other", ("Live",), {B, L}),
        (None, (), {OTHER}),
        ("Mixtape/Street", (), {OTHER}),  # a primary type MusicBrainz may add one day
        ("album", ("live",), {A, L}),
    ],
)
def test_release_kinds(primary: str | None, secondary: tuple[str, ...], kinds: set) -> None:
    assert release_kinds(primary, secondary) == kinds


def test_every_kind_must_be_selected() -> None:
    no_live = Preferences(release_types=ALL_RELEASE_TYPES - {L})
    assert no_live.announces("Album", ())
    assert not no_live.announces("Album", ("Live",))
    # The default keeps everything announced before broadcasts could be fetched ...
    assert Preferences().announces("Album", ("DJ-mix",))
    assert Preferences().announces(None, ())
    # ... and leaves broadcasts out: selecting them is what widens the MusicBrainz query.
    assert not Preferences().announces("Broadcast", ())
    assert not Preferences().announces("Other", ())
    assert Preferences().release_types == DEFAULT_RELEASE_TYPES == ALL_RELEASE_TYPES - {B}
    with_broadcasts = Preferences(release_types=DEFAULT_RELEASE_TYPES | {B})
    assert with_broadcasts.announces("Other", ())
    assert with_broadcasts.announces("Other", ("Audiobook",))  # "other" is selected too
    assert not Preferences(release_types=frozenset({B})).announces("Other", ("Audiobook",))


def test_a_long_bad_value_is_quoted_short() -> None:
    with pytest.raises(PreferenceError) as raised:
        parse_release_types("album," + "x" * 10_000)
    assert len(str(raised.value)) < 250 and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("album,mixtape", "types 'album,mixtape': 'mixtape' is not one of album, single, ep, "),
        (" , ", "types ' , ': name at least one of album"),
    ],
)
def test_bad_release_types_are_named(text: str, error: str) -> None:
    with pytest.raises(PreferenceError) as raised:
        parse_release_types(text)
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)


def test_release_types_any_case_and_all() -> None:
    assert parse_release_types(" Album, EP ") == {A, E}
    assert parse_release_types("all") == ALL_RELEASE_TYPES
    assert parse_release_types("default") == DEFAULT_RELEASE_TYPES
    assert parse_release_types("album,Broadcast") == {A, B}
    assert B not in parse_release_types("default") and B in parse_release_types("all")
    assert parse_release_types("default, Broadcast") == ALL_RELEASE_TYPES
    assert parse_on_off("OFF") is False
    with pytest.raises(PreferenceError, match="appearances 'sometimes': use on or off"):
        parse_on_off("sometimes")


def test_weekly_needs_a_weekday_and_daily_takes_none() -> None:
    with pytest.raises(PreferenceError, match="frequency weekly needs a weekday"):
        Preferences().with_changes(frequency=Frequency.WEEKLY)
    with pytest.raises(PreferenceError, match="weekday is only for frequency weekly"):
        Preferences().with_changes(frequency=Frequency.DAILY, weekday="monday")
    weekly = Preferences().with_changes(weekday="friday")  # a weekday alone means weekly
    assert (weekly.frequency, weekly.weekday) == (Frequency.WEEKLY, "friday")
    assert weekly.with_changes(frequency=Frequency.DAILY).weekday is None
    assert weekly.sends_on(date(2026, 11, 27)) and not weekly.sends_on(date(2026, 11, 26))


def test_block_and_unblock() -> None:
    blocked = Preferences().with_changes(block=frozenset({"a", "b"}))
    assert blocked.with_changes(unblock=frozenset({"a"})).blocked_artists == {"b"}


def test_csv_cells() -> None:
    assert parse_csv_columns({"email": "x@example.com", "types": ""}) is None
    changes = parse_csv_columns({"types": "album", "weekday": "Monday", "frequency": "weekly"})
    assert changes is not None
    after = changes.applied_to(Preferences())
    assert (after.release_types, after.weekday) == ({A}, "monday")
    with pytest.raises(PreferenceError, match="weekday 'monday': only for frequency weekly"):
        parse_csv_columns({"frequency": "daily", "weekday": "monday"})


def test_the_weekly_subject_names_the_first_day_covered() -> None:
    sunday = date(2026, 11, 22)
    assert week_start(sunday) == date(2026, 11, 16)
    assert (
        weekly_digest_subject(week_start(sunday)) == "New Music for the week of November 16, 2026"
    )


def _release(title: str, released: date) -> ReleaseGroup:
    return ReleaseGroup(
        mbid=f"00000000-0000-0000-0000-{released.day:012d}",
        title=title,
        primary_type="Album",
        secondary_types=(),
        first_release_date=released.isoformat(),
        release_date=released,
        artists=(CreditedArtist("11111111-1111-1111-1111-111111111111", "Björk"),),
    )


def test_a_weekly_digest_says_the_week_not_the_day() -> None:
    sunday = date(2026, 11, 22)
    digest = Digest(
        subscriber=Subscriber(1, "ana@example.com", "Ana"),
        partition_date=sunday,
        artists=(
            DigestArtist(
                "11111111-1111-1111-1111-111111111111",
                "Björk",
                (_release("Tuesday's", date(2026, 11, 17)), _release("Sunday's", sunday)),
            ),
        ),
        week_of=week_start(sunday),
    )
    rendered = render_digest(digest)
    assert rendered.subject == "New Music for the week of November 16, 2026"
    text = " ".join(rendered.text.split())
    assert (
        "2 new releases from the artist you follow came out between Monday, November 16, 2026 "
        "and Sunday, November 22, 2026." in text
    )
    assert "We write once a week" in text and "MusicBrainz late" not in text
    daily = render_digest(replace(digest, week_of=None))
    assert daily.subject == "New Music for November 22, 2026"
    assert "was added to MusicBrainz late" in " ".join(daily.text.split())

from datetime import date

import pytest

from musicbutler_pipeline.domain.rules import (
    InvalidInput,
    digest_subject,
    exact_release_date,
    normalize_email,
    normalize_mbid,
    parse_partition_date,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23", date(2026, 11, 23)),
        ("2026-11", None),
        ("2026", None),
        ("", None),
        (None, None),
        ("2026-02-30", None),
        ("2026-11-23T00:00", None),
        ("26-11-23", None),
    ],
)
def test_only_complete_dates_are_exact(value: str | None, expected: date | None) -> None:
    assert exact_release_date(value) == expected


@pytest.mark.parametrize(
    ("day", "subject"),
    [
        (date(2026, 11, 23), "New Music for November 23, 2026"),
        (date(2027, 1, 5), "New Music for January 5, 2027"),
        (date(2026, 5, 1), "New Music for May 1, 2026"),
    ],
)
def test_subject_has_month_name_and_day_without_leading_zero(day: date, subject: str) -> None:
    assert digest_subject(day) == subject


def test_partition_date_must_be_iso_and_not_after_latest() -> None:
    assert parse_partition_date("2026-11-23", latest=date(2026, 11, 25)) == date(2026, 11, 23)
    assert parse_partition_date("2026-11-25", latest=date(2026, 11, 25)) == date(2026, 11, 25)
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        parse_partition_date("23/11/2026")
    with pytest.raises(InvalidInput, match="not a calendar date"):
        parse_partition_date("2026-13-01")
    with pytest.raises(InvalidInput, match=r"in the future.*2026-11-25"):
        parse_partition_date("2026-11-26", latest=date(2026, 11, 25))


def test_mbid_is_canonical_lower_case_uuid() -> None:
    assert (
        normalize_mbid(" A74B1B7F-71A5-4011-9441-D0B5E4122711 ")
        == "a74b1b7f-71a5-4011-9441-d0b5e4122711"
    )
    for bad in (
        "",
        "radiohead",
        "a74b1b7f71a540119441d0b5e4122711",
        "{a74b1b7f-71a5-4011-9441-d0b5e4122711}",
        "a74b1b7f-71a5-4011-9441-d0b5e412271",
    ):
        with pytest.raises(InvalidInput, match="not a MusicBrainz identifier"):
            normalize_mbid(bad)


def test_email_syntax_and_domain_case() -> None:
    assert normalize_email(" Ana.Silva+music@Example.COM ") == "Ana.Silva+music@example.com"
    for bad in (
        "",
        "no-at-sign",
        "two@@example.com",
        "a b@example.com",
        "x@localhost",
        "x@example..com",
        ".x@example.com",
        "x.@example.com",
        "x@-example.com",
    ):
        with pytest.raises(InvalidInput, match="not a valid e-mail address"):
            normalize_email(bad)

"""Parsing, validation and window filtering of MusicBrainz search pages; the politeness rules
(backoff, Retry-After, rate limiter) with a fake clock. No network."""

import hashlib
import itertools
import json
import random
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest

from musicbutler_pipeline import __version__
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.domain.models import SourcePage
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.sources.http import RateLimiter, parse_retry_after
from musicbutler_pipeline.sources.musicbrainz import (
    ContactRequired,
    MalformedRecord,
    MusicBrainzClient,
    MusicBrainzError,
    bundled_snapshot_root,
    is_widened,
    parse_release_group,
    search_query,
    user_agent,
)
from tests.builders import dated, rederive
from tests.fixtures.loopback import FakeClock

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
FETCHED_AT = datetime(2026, 11, 23, 21, 35, tzinfo=UTC)


def record(mbid: str, title: str, released: str | None, *credits: tuple[str, str, str]) -> dict:
    document: dict = {
        "id": mbid,
        "title": title,
        "primary-type": "Album",
        "artist-credit": [
            {"name": name, "joinphrase": join, "artist": {"id": artist, "name": name}}
            for artist, name, join in credits
        ],
    }
    if released is not None:
        document["first-release-date"] = released
    return document


A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"


def rg(n: int) -> str:
    return f"{n:08d}-0000-4000-8000-000000000000"


def raw_page(records: list, *, offset: int = 0, count: int | None = None) -> SourcePage:
    body = json.dumps(
        {
            "count": len(records) if count is None else count,
            "offset": offset,
            "release-groups": records,
        }
    ).encode()
    return SourcePage(
        url=f"http://mb.test/ws/2/release-group?offset={offset}",
        query="q",
        offset=offset,
        body=body,
        record_count=len(records),
        total_count=len(records) if count is None else count,
        fetched_at=FETCHED_AT,
    )


def sample_pages() -> list[SourcePage]:
    pages = []
    for path in sorted((bundled_snapshot_root() / SAMPLE_DAY.isoformat()).glob("offset-*.json")):
        document = json.loads(path.read_bytes())
        pages.append(
            SourcePage(
                url=path.name,
                query=EXPECTED["query"],
                offset=document["offset"],
                body=path.read_bytes(),
                record_count=len(document["release-groups"]),
                total_count=document["count"],
                fetched_at=FETCHED_AT,
            )
        )
    return pages


def test_every_artist_of_a_multi_artist_credit_is_kept_in_order() -> None:
    group = parse_release_group(
        record(
            rg(1),
            "Corazón",
            "2026-11-23",
            (A, "Bad Bunny", ", "),
            (B, "ROSALÍA", " & "),
            (C, "Ulises", ""),
        )
    )
    assert [artist.mbid for artist in group.artists] == [A, B, C]
    assert group.credit == "Bad Bunny, ROSALÍA & Ulises"
    assert group.release_date == date(2026, 11, 23)


def test_the_credited_name_wins_over_the_artist_name() -> None:
    document = record(rg(1), "T", "2026-11-23", (A, "ROSALÍA", ""))
    document["artist-credit"][0]["artist"]["name"] = "Rosalía"
    assert parse_release_group(document).artists[0].name == "ROSALÍA"


@pytest.mark.parametrize("released", ["2026", "2026-11", "", None, "2026-02-30", "23/11/2026"])
def test_partial_missing_and_impossible_dates_are_never_exact(released: str | None) -> None:
    group = parse_release_group(record(rg(1), "T", released, (A, "X", "")))
    assert group.release_date is None
    assert group.first_release_date == (released or "")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"title": "T", "artist-credit": [{"name": "X", "artist": {"id": A}}]}, "None"),
        (
            record("81c86796-569d-5e3f-8d42-634b8066488", "T", "2026-11-23", (A, "X", "")),
            "81c86796",
        ),
        (record(rg(2), "", "2026-11-23", (A, "X", "")), f"{rg(2)}: missing title"),
        (record(rg(3), "T", "2026-11-23"), f"{rg(3)}: missing artist-credit"),
        (
            {"id": rg(4), "title": "T", "artist-credit": [{"name": "X", "artist": {"name": "X"}}]},
            f"{rg(4)}: artist-credit[0] has no valid artist id",
        ),
        ({**record(rg(5), "T", "2026-11-23", (A, "X", "")), "first-release-date": 20261123}, rg(5)),
        ({**record(rg(6), "T", "2026-11-23", (A, "X", "")), "secondary-types": "Live"}, rg(6)),
    ],
)
def test_malformed_records_say_which_and_what(document: dict, problem: str) -> None:
    with pytest.raises(MalformedRecord) as raised:
        parse_release_group(document)
    assert problem in str(raised.value)


def test_collect_keeps_exact_dates_inside_the_window_and_counts_the_rest() -> None:
    day = date(2026, 11, 23)
    page_one = [
        record(rg(1), "on the day", "2026-11-23", (A, "X", "")),
        record(rg(2), "late entry", "2026-11-20", (A, "X", "")),
        record(rg(3), "partial", "2026-11", (A, "X", "")),
        {"title": "no id"},
    ]
    page_two = [
        record(rg(4), "outside the window", "2026-11-02", (A, "X", "")),
        record(rg(1), "on the day, seen again", "2026-11-23", (A, "X", "")),
        record(rg(5), "no date", None, (A, "X", "")),
    ]
    fetched = rederive(
        [raw_page(page_one, count=7), raw_page(page_two, offset=4, count=7)], day, lookback_days=14
    )
    assert {group.mbid: group.title for group in fetched.release_groups} == {
        rg(1): "on the day, seen again",
        rg(2): "late entry",
    }
    assert (fetched.records_seen, fetched.records_skipped, fetched.not_exact_date) == (7, 1, 2)
    assert fetched.skipped_ids == ("(no id)",)
    assert (fetched.window_start, fetched.window_end) == (date(2026, 11, 9), day)
    assert [group.mbid for group in dated(fetched, day)] == [rg(1)]
    assert fetched.requests == 2


def test_lookback_zero_keeps_the_exact_day_only() -> None:
    page = [
        record(rg(1), "on the day", "2026-11-23", (A, "X", "")),
        record(rg(2), "the day before", "2026-11-22", (A, "X", "")),
    ]
    fetched = rederive([raw_page(page)], date(2026, 11, 23), lookback_days=0)
    assert [group.mbid for group in fetched.release_groups] == [rg(1)]


def test_the_bundled_sample_gives_the_expected_day() -> None:
    pages = sample_pages()
    fetched = rederive(pages, SAMPLE_DAY, lookback_days=14)
    assert fetched.records_seen == EXPECTED["total_records"] == 230
    assert fetched.records_skipped == EXPECTED["malformed_records"] == 3
    assert {group.mbid for group in dated(fetched, SAMPLE_DAY)} == set(
        EXPECTED["exact_date_release_groups"]
    )
    assert all(
        date.fromisoformat(EXPECTED["window_start"]) <= group.release_date <= SAMPLE_DAY
        for group in fetched.release_groups
    )
    assert [page.sha256 for page in fetched.pages] == [
        hashlib.sha256(page.body).hexdigest() for page in pages
    ]


def test_a_page_that_is_not_a_search_result_is_an_error() -> None:
    page = SourcePage("http://mb.test/x", "q", 0, b"<html>busy</html>", 0, 0, FETCHED_AT)
    with pytest.raises(MusicBrainzError, match=r"http://mb.test/x: response is not JSON"):
        rederive([page], SAMPLE_DAY, lookback_days=0)


def test_search_query_and_user_agent() -> None:
    assert search_query(date(2026, 11, 9), SAMPLE_DAY) == EXPECTED["query"]
    widened = search_query(date(2026, 11, 9), SAMPLE_DAY, widened=True)
    assert widened == (
        "firstreleasedate:[2026-11-09 TO 2026-11-23] "
        "AND primarytype:(album OR ep OR single OR broadcast OR other)"
    )
    assert is_widened(widened) and not is_widened(EXPECTED["query"])
    assert (
        user_agent("ops@example.org") == f"musicbutler-pipeline/{__version__} ( ops@example.org )"
    )


@pytest.mark.parametrize("contact", [None, "", "   "])
def test_the_client_refuses_to_exist_without_a_contact(contact: str | None) -> None:
    with pytest.raises(ContactRequired, match="MUSICBUTLER_CONTACT"):
        MusicBrainzClient("https://musicbrainz.org/ws/2", contact=contact)


@pytest.mark.parametrize("page_size", [0, 101])
def test_page_size_stays_within_what_musicbrainz_allows(page_size: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        MusicBrainzClient("https://mb.test/ws/2", contact="x@example.org", page_size=page_size)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=8, backoff=1.0, max_backoff=30.0, jitter=True)
    rng = random.Random(1)
    for attempt, step in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (7, 30)]:
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= wait <= step for wait in waits), attempt
        assert len({round(wait, 6) for wait in waits}) > 100, "no jitter"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 23, 21, 35, tzinfo=UTC)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    for unusable in (None, "", "soon", "-3", "nan"):
        assert parse_retry_after(unusable, now) is None


def test_rate_limiter_spaces_starts_and_honours_hold_off() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock)
    starts = []
    for _ in range(3):
        with limiter.slot():
            starts.append(clock.monotonic())
    assert [b - a for a, b in itertools.pairwise(starts)] == [0.5, 0.5]
    limiter.hold_off(3.0)
    with limiter.slot():
        starts.append(clock.monotonic())
    assert starts[-1] - starts[-2] == 3.0
    limiter.slow_down_to(1.0)
    limiter.slow_down_to(10.0)  # a laxer request never loosens the budget
    for _ in range(2):
        with limiter.slot():
            starts.append(clock.monotonic())
    assert starts[-1] - starts[-2] == 1.0


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_rate_limiter_refuses_a_meaningless_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)

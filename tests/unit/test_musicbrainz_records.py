"""Records and pages the warehouse cannot store, or that are not what MusicBrainz promises, decided
at the edge (issue 10, finding 5). No network, no database."""

from __future__ import annotations

import json
import logging

import pytest

from musicbutler_pipeline.demo import SAMPLE_DAY
from musicbutler_pipeline.sources.musicbrainz import (
    MalformedRecord,
    MusicBrainzError,
    parse_release_group,
    read_search_page,
)
from tests.builders import rederive
from tests.unit.test_musicbrainz_parse import A, raw_page, record, rg


def good(**changes: object) -> dict:
    return {**record(rg(1), "Title", "2026-11-23", (A, "Artist", "")), **changes}


def credit(**changes: object) -> list[dict]:
    return [{"name": "Artist", "joinphrase": "", "artist": {"id": A, "name": "Artist"}, **changes}]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        # Text PostgreSQL cannot store (NUL) or that SQLite and psycopg cannot encode.
        (good(title="Bad\u0000Title"), "title contains a NUL character"),
        (good(title="Bad \ud800 Title"), "title contains a lone surrogate (U+D800)"),
        (
            good(**{"artist-credit": credit(name="A\u0000B")}),
            "artist-credit[0] name contains a NUL",
        ),
        (good(**{"artist-credit": credit(joinphrase="\udfff")}), "joinphrase contains a lone"),
        (good(**{"primary-type": "x\u0000"}), "primary-type contains a NUL"),
        (good(**{"secondary-types": ["Live", "\ud800"]}), "secondary-types[1] contains a lone"),
        # Wrong types anywhere in the record.
        (good(id=12345), "id 12345 is not a MusicBrainz identifier"),
        (good(id=[rg(1)]), "is not a MusicBrainz identifier"),
        (good(title=["Title"]), "title is a list, not a string"),
        (good(**{"artist-credit": {"name": "Artist"}}), "artist-credit is a dict, not a list"),
        (good(**{"artist-credit": ["Artist"]}), "artist-credit[0] has no artist"),
        (good(**{"artist-credit": credit(name=5)}), "artist-credit[0] name is a int"),
        (good(**{"artist-credit": credit(joinphrase={"x": 1})}), "joinphrase is a dict"),
        (good(**{"artist-credit": [{"name": "X", "artist": {"id": 7}}]}), "no valid artist id"),
        (good(**{"first-release-date": 20261123}), "first-release-date is a int"),
        (good(**{"primary-type": 1}), "primary-type is a int, not a string"),
        (good(**{"secondary-types": "Live"}), "secondary-types is a str, not a list"),
        # Bounded lengths: far above anything MusicBrainz holds, below what breaks a column.
        (good(title="T" * 2001), "title is 2001 characters long, more than 2000"),
        (good(**{"artist-credit": credit(name="N" * 1001)}), "more than 1000"),
        (good(**{"artist-credit": credit(joinphrase=" " * 201)}), "more than 200"),
        (good(**{"primary-type": "Album" * 7}), "primary-type is 35 characters long"),
        (good(**{"secondary-types": ["Live"] * 17}), "secondary-types has 17 items"),
        (good(**{"artist-credit": credit() * 501}), "artist-credit has 501 items"),
    ],
)
def test_a_record_the_warehouse_cannot_store_is_malformed(document: dict, problem: str) -> None:
    with pytest.raises(MalformedRecord) as raised:
        parse_release_group(document)
    assert problem in str(raised.value)
    if isinstance(document.get("id"), str):
        assert rg(1) in str(raised.value)  # the message names the record


def test_control_characters_are_cleaned_to_one_space_not_lost() -> None:
    group = parse_release_group(
        good(
            title="\tLagos Midnight \r\n (Extended)\x07Mix\u2028",
            **{"artist-credit": credit(name="Burna\nBoy", joinphrase=" feat.\t")},
        )
    )
    assert group.title == "Lagos Midnight (Extended) Mix"
    assert group.artists[0].name == "Burna Boy"
    assert group.artists[0].join_phrase == " feat. "  # the spaces around a join phrase stay


def test_a_title_of_control_characters_only_is_a_missing_title() -> None:
    with pytest.raises(MalformedRecord, match="missing title"):
        parse_release_group(good(title="\n\t\r"))


def test_the_longest_allowed_fields_are_kept_whole() -> None:
    group = parse_release_group(good(title="T" * 2000, **{"primary-type": "P" * 32}))
    assert (len(group.title), group.primary_type) == (2000, "P" * 32)


def test_skipped_ids_are_shown_safely_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    records = [
        good(id="bad\u0000id"),
        good(id="\ud800" + "x" * 200),
        good(id={"nested": True}),
        good(id=rg(2), title="\u0000"),
        good(id=rg(3)),
    ]
    with caplog.at_level(logging.WARNING, logger="musicbutler_pipeline.sources.musicbrainz"):
        fetched = rederive([raw_page(records)], SAMPLE_DAY, lookback_days=0)
    assert [group.mbid for group in fetched.release_groups] == [rg(3)]
    assert fetched.skipped_ids[0] == "bad\\x00id"
    assert fetched.skipped_ids[1].startswith("\\ud800xxx") and fetched.skipped_ids[1].endswith("…")
    assert len(fetched.skipped_ids[1]) <= 80
    assert fetched.skipped_ids[2] == '{"nested": true}'
    assert fetched.skipped_ids[3] == rg(2)
    for shown in fetched.skipped_ids:
        assert shown.isprintable()
        shown.encode("utf-8")  # storable, loggable
    logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 4 and rg(2) in logged[3] and "bad\\x00id" in logged[0]


# --- Pages: what the web service promises is a JSON object with a count and a list ------------


def page(**document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (page(count=True, offset=0, **{"release-groups": []}), "count is true, not a number"),
        (page(count="230", offset=0, **{"release-groups": []}), 'count is "230", not a number'),
        (page(count=-1, offset=0, **{"release-groups": []}), "count is -1, not a number"),
        (page(count=2.5, offset=0, **{"release-groups": []}), "count is 2.5, not a number"),
        (page(offset=0, **{"release-groups": []}), "no count"),
        (page(count=230, offset=0), "no release-groups list"),
        (page(count=230, offset=0, **{"release-groups": {}}), "no release-groups list"),
        (b"[]", "response is not a JSON object"),
        (b"<html>busy</html>", "response is not JSON"),
        (b'{"count": 1, "release-groups": ["\xff"]}', "response is not JSON"),
        (page(count=230, offset=100, **{"release-groups": []}), "no release groups at offset 100"),
    ],
)
def test_a_page_that_is_not_a_search_result_page_says_what_is_wrong(
    body: bytes, problem: str
) -> None:
    with pytest.raises(MusicBrainzError) as raised:
        read_search_page(body, "http://mb.test/ws/2/release-group?offset=100", offset=100)
    assert problem in str(raised.value)
    assert "http://mb.test/ws/2/release-group?offset=100: " in str(raised.value)


def test_the_end_of_the_window_is_an_empty_page_only_when_count_says_so() -> None:
    end = read_search_page(page(count=230, **{"release-groups": []}), "u", offset=230)
    assert (end.count, end.records) == (230, [])
    quiet = read_search_page(page(count=0, **{"release-groups": []}), "u", offset=0)
    assert quiet.count == 0

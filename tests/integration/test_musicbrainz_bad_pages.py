"""Pages that are not what the MusicBrainz web service promises, from a real HTTP server on
127.0.0.1: never taken as the end of the window; retried like a 503, then a clear failure."""

from __future__ import annotations

import pytest

from musicbutler_pipeline.demo import SAMPLE_DAY
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.sources.musicbrainz import MusicBrainzUnavailable
from tests.fixtures.loopback import FakeClock, LoopbackServer, Reply, at_offset, scripted
from tests.integration.test_musicbrainz_client import make_client, replay  # noqa: F401

pytest_plugins = ["tests.fixtures.http_server"]

BAD_PAGES = {
    "count true": Reply.json({"count": True, "offset": 100, "release-groups": []}),
    "count a string": Reply.json({"count": "230", "offset": 100, "release-groups": []}),
    "count negative": Reply.json({"count": -1, "offset": 100, "release-groups": []}),
    "count missing": Reply.json({"offset": 100, "release-groups": []}),
    "empty page": Reply.json({"count": 230, "offset": 100, "release-groups": []}),
    "not json": Reply(200, b"<html>upstream busy</html>"),
}


@pytest.mark.parametrize("bad", BAD_PAGES, ids=list(BAD_PAGES))
def test_a_bad_page_once_is_retried_and_the_window_is_complete(
    replay: LoopbackServer,  # noqa: F811
    bad: str,
) -> None:
    replay.handler = scripted(replay.handler, at_offset(100), [BAD_PAGES[bad]])
    clock = FakeClock()
    fetched = make_client(replay, clock).fetch(SAMPLE_DAY)
    assert [r.query["offset"] for r in replay.requests] == ["0", "100", "100", "200"]
    assert fetched.records_seen == 230  # nothing lost
    assert [page.offset for page in fetched.pages] == [0, 100, 200]
    assert 0.5 <= clock.sleeps[1] <= 1.0  # backed off as after a 503, then the normal pace


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("count true", "count is true, not a number of results"),
        ("empty page", "no release groups at offset 100 of 230"),
    ],
)
def test_a_page_that_stays_bad_fails_the_fetch_naming_the_offset(
    replay: LoopbackServer,  # noqa: F811
    bad: str,
    problem: str,
) -> None:
    replay.handler = scripted(replay.handler, at_offset(100), [BAD_PAGES[bad]] * 100)
    clock = FakeClock()
    with pytest.raises(MusicBrainzUnavailable) as raised:
        make_client(replay, clock, retry=RetryPolicy(attempts=4, jitter=True)).fetch(SAMPLE_DAY)
    message = str(raised.value)
    assert f"{replay.url}/ws/2/release-group?" in message and "offset=100" in message
    assert f"{problem} after 4 attempt(s)" in message
    assert [r.query["offset"] for r in replay.requests] == ["0", "100", "100", "100", "100"]
    assert max(clock.sleeps) <= 30.0

"""Listen links looked up over real HTTP on 127.0.0.1: the sample day's recorded url-rels pages
replayed, malformed pages, 503 with retries, paging, an outage. Waits run on a fake clock."""

from __future__ import annotations

import json
import logging
import random

import pytest

from musicbutler_pipeline import __version__
from musicbutler_pipeline.demo import SAMPLE_DIR
from musicbutler_pipeline.domain.models import ListenLink
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.sources.http import RateLimiter
from musicbutler_pipeline.sources.musicbrainz import MusicBrainzClient, bundled_snapshot_root
from musicbutler_pipeline.sources.musicbrainz_links import (
    MAX_CONSECUTIVE_FAILURES,
    lookup_listen_links,
)
from tests.fixtures.loopback import (
    FakeClock,
    LoopbackServer,
    RecordedRequest,
    Reply,
    always,
    musicbrainz_replay,
    scripted,
)

pytest_plugins = ["tests.fixtures.http_server"]

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
OWED = sorted(EXPECTED["pool_release_groups_on_day"])
RELEASES = bundled_snapshot_root() / "releases"
CONTACT = "test@example.org"
GROUP = "01c53a7a-6906-59b7-9018-1f4060022bc3"  # "The Archer's Almanac": five services


def make_client(server: LoopbackServer, clock: FakeClock, **options: object) -> MusicBrainzClient:
    return MusicBrainzClient(
        f"{server.url}/ws/2",
        contact=CONTACT,
        clock=clock,
        limiter=RateLimiter(1.0, clock),
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def replay(http_server: LoopbackServer) -> LoopbackServer:
    http_server.handler = musicbrainz_replay(bundled_snapshot_root())
    return http_server


def for_group(mbid: str):
    return lambda request: request.query.get("release-group") == mbid


def test_one_polite_browse_per_owed_release_group(replay: LoopbackServer) -> None:
    clock = FakeClock()
    fetched = lookup_listen_links(make_client(replay, clock), OWED)

    requests = replay.requests_to("/ws/2/release")
    assert [request.query["release-group"] for request in requests] == OWED
    for request in requests:
        assert request.query["inc"] == "url-rels"
        assert (request.query["fmt"], request.query["limit"], request.query["offset"]) == (
            "json",
            "100",
            "0",
        )
        assert request.headers["user-agent"] == f"musicbutler-pipeline/{__version__} ( {CONTACT} )"
    assert len({request.client_port for request in requests}) == 1, "connection not reused"
    assert clock.sleeps == [1.0] * (len(OWED) - 1)  # one request per second, nothing else

    assert fetched.requests == len(OWED) == 26
    assert set(fetched.links) == set(OWED)
    assert sum(bool(links) for links in fetched.links.values()) == 22  # 4 have none known
    assert fetched.links[GROUP] == (
        ListenLink("Spotify", "https://open.spotify.com/album/2fojyOcn96FkDOqKJl25OJ"),
        ListenLink("Apple Music", "https://music.apple.com/album/8945953780"),
        ListenLink("Bandcamp", "https://k4rasw7i.bandcamp.com/album/the-archer-s-almanac"),
        ListenLink("Deezer", "https://www.deezer.com/album/036758417"),
        ListenLink("Tidal", "https://tidal.com/browse/album/028937433"),
    )
    # Discogs is a URL relationship but not somewhere to listen.
    assert not any("discogs" in link.url for links in fetched.links.values() for link in links)
    # The raw pages are the bytes received, numbered in lookup order.
    assert [page.body for page in fetched.pages] == [
        (RELEASES / mbid / "offset-0000.json").read_bytes() for mbid in OWED
    ]
    assert [page.offset for page in fetched.pages] == list(range(len(OWED)))


def test_malformed_releases_are_logged_and_skipped(
    replay: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="musicbutler_pipeline.sources.musicbrainz_links"):
        fetched = lookup_listen_links(make_client(replay, FakeClock()), OWED)
    # One recorded release has no id: skipped, and its release group keeps its good release.
    assert fetched.records_skipped == 1
    assert fetched.skipped_ids == ("(no id)",)
    assert "skipping malformed MusicBrainz release (no id)" in caplog.text
    assert "2dc4154a-80c5-5b2d-a61b-f4d24100a289" in caplog.text
    assert [link.service for link in fetched.links["2dc4154a-80c5-5b2d-a61b-f4d24100a289"]] == [
        "Spotify",
        "Deezer",
        "Tidal",
        "YouTube Music",
    ]


def test_a_page_that_is_not_a_release_browse_is_retried_then_reported(
    replay: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Not JSON twice, then no releases list for good: the lookup fails, the others still run.
    bad = [Reply(200, b"<html>oops</html>")] * 2 + [Reply.json({"release-count": 3})] * 10
    replay.handler = scripted(replay.handler, for_group(GROUP), bad)
    client = make_client(replay, FakeClock(), retry=RetryPolicy(attempts=3, backoff=1.0))
    with caplog.at_level(logging.WARNING):
        fetched = lookup_listen_links(client, OWED)
    assert len(replay.requests_to("/ws/2/release")) == len(OWED) + 2  # 3 attempts for GROUP
    [(mbid, why)] = fetched.failed
    assert mbid == GROUP
    assert "response has no releases list after 3 attempt(s)" in why
    assert f"no listen links for release group {GROUP}" in caplog.text
    assert GROUP not in fetched.links
    assert len(fetched.links) == len(OWED) - 1


@pytest.mark.parametrize(
    "body",
    [
        {"release-count": True, "releases": []},
        {"release-count": -1, "releases": []},
        {"release-count": 2, "releases": "nope"},
        ["not", "an", "object"],
        {"release-count": 1, "release-offset": 0, "releases": []},  # empty before the count
    ],
)
def test_malformed_browse_pages_fail_only_their_release_group(
    replay: LoopbackServer, body: object
) -> None:
    replay.handler = scripted(replay.handler, for_group(GROUP), [Reply.json(body)] * 5)
    fetched = lookup_listen_links(
        make_client(replay, FakeClock(), retry=RetryPolicy(attempts=2, backoff=1.0)),
        [GROUP, OWED[1]],
    )
    assert [mbid for mbid, _why in fetched.failed] == [GROUP]
    assert list(fetched.links) == [OWED[1]] and fetched.links[OWED[1]]


def test_malformed_relations_are_left_out(http_server: LoopbackServer) -> None:
    release = "5b5c0f4f-0e57-4d4c-9a5d-3c4b2a1f0e9d"
    http_server.handler = always(
        Reply.json(
            {
                "release-count": 2,
                "release-offset": 0,
                "releases": [
                    {
                        "id": release,
                        "status": "Official",
                        "relations": [
                            {"target-type": "url", "url": {"resource": "javascript:alert(1)"}},
                            {"target-type": "url", "url": None},
                            {"target-type": "url", "url": {"resource": 42}},
                            {"target-type": "artist", "artist": {"id": "x"}},
                            "not a relation",
                            {"target-type": "url", "url": {"resource": "https://x.bandcamp.com/a"}},
                        ],
                    },
                    {"id": "not-an-id", "relations": []},
                ],
            }
        )
    )
    fetched = lookup_listen_links(make_client(http_server, FakeClock()), [GROUP])
    assert fetched.links[GROUP] == (ListenLink("Bandcamp", "https://x.bandcamp.com/a"),)
    assert fetched.skipped_ids == ("not-an-id",)


def test_503_with_retry_after_is_honoured_then_succeeds(replay: LoopbackServer) -> None:
    replay.handler = scripted(
        replay.handler, for_group(GROUP), [Reply(503, b"busy", {"Retry-After": "3"})]
    )
    clock = FakeClock()
    fetched = lookup_listen_links(make_client(replay, clock), [GROUP, OWED[1]])
    groups = [request.query["release-group"] for request in replay.requests]
    assert groups == [GROUP, GROUP, OWED[1]]
    assert clock.sleeps == [3.0, 1.0]  # the retry waited what the server asked
    assert len(fetched.links[GROUP]) == 5
    assert fetched.failed == ()
    assert fetched.requests == 2  # pages kept: the 503 is not a page
    assert fetched.responses == 3  # but it cost a request


def test_an_outage_stops_the_lookups_after_a_few_failures(http_server: LoopbackServer) -> None:
    http_server.handler = always(Reply(503))
    clock = FakeClock()
    fetched = lookup_listen_links(
        make_client(http_server, clock, retry=RetryPolicy(attempts=2, backoff=1.0)), OWED
    )
    # Three release groups tried (two attempts each), the other 23 not: minutes, not hours.
    assert len(http_server.requests) == MAX_CONSECUTIVE_FAILURES * 2
    assert [mbid for mbid, _why in fetched.failed] == OWED[:MAX_CONSECUTIVE_FAILURES]
    assert fetched.not_tried == tuple(OWED[MAX_CONSECUTIVE_FAILURES:])
    assert (fetched.requests, fetched.responses) == (0, MAX_CONSECUTIVE_FAILURES * 2)
    assert fetched.links == {}


def test_a_release_group_with_many_releases_is_paged(http_server: LoopbackServer) -> None:
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(5)]

    def pages(request: RecordedRequest) -> Reply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        releases = [
            {
                "id": release,
                "status": "Official",
                "date": "2026-11-23",
                "relations": [
                    {
                        "target-type": "url",
                        "type": "free streaming",
                        "url": {"resource": f"https://open.spotify.com/album/{n}"},
                    },
                    *(
                        [{"target-type": "url", "url": {"resource": "https://tidal.com/album/9"}}]
                        if n == 4
                        else []
                    ),
                ],
            }
            for n, release in enumerate(ids)
        ]
        return Reply.json(
            {
                "release-count": len(ids),
                "release-offset": offset,
                "releases": releases[offset : offset + limit],
            }
        )

    http_server.handler = pages
    fetched = lookup_listen_links(make_client(http_server, FakeClock(), page_size=2), [GROUP])
    assert [request.query["offset"] for request in http_server.requests] == ["0", "2", "4"]
    assert fetched.requests == 3
    assert fetched.releases_seen == 5
    # Spotify from the first edition (lowest id on the same date), Tidal from the last page.
    assert fetched.links[GROUP] == (
        ListenLink("Spotify", "https://open.spotify.com/album/0"),
        ListenLink("Tidal", "https://tidal.com/album/9"),
    )


def test_a_release_group_musicbrainz_does_not_know_fails_alone(replay: LoopbackServer) -> None:
    unknown = "ffffffff-ffff-4fff-bfff-ffffffffffff"
    replay.handler = scripted(
        replay.handler, for_group(unknown), [Reply(404, b'{"error": "Not Found"}')]
    )
    fetched = lookup_listen_links(make_client(replay, FakeClock()), [unknown, GROUP])
    [(mbid, why)] = fetched.failed
    assert mbid == unknown and "HTTP 404" in why
    assert len(fetched.links[GROUP]) == 5
    assert len(replay.requests) == 2  # a 404 is not retried

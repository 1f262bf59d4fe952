"""The MusicBrainz client against a real HTTP server on 127.0.0.1 replaying recorded pages.

Retries and backoff run on a fake clock (the waits are asserted, not slept); the rate-limit tests
use the real clock and measure request arrival times at the server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import threading
from datetime import date
from pathlib import Path

import pytest

from musicbutler_pipeline import __version__
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.resources import MusicBrainzReleaseSource
from musicbutler_pipeline.settings import SettingsError
from musicbutler_pipeline.sources.http import RateLimiter
from musicbutler_pipeline.sources.musicbrainz import (
    ContactRequired,
    MusicBrainzClient,
    MusicBrainzError,
    MusicBrainzUnavailable,
    bundled_snapshot_root,
)
from tests.builders import dated, rederive
from tests.fixtures.loopback import (
    FakeClock,
    Handler,
    LoopbackServer,
    RecordedRequest,
    Reply,
    always,
    at_offset,
    musicbrainz_replay,
    scripted,
)

pytest_plugins = ["tests.fixtures.http_server"]

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
SAMPLE_PAGES = sorted((bundled_snapshot_root() / SAMPLE_DAY.isoformat()).glob("offset-*.json"))
CONTACT = "test@example.org"


def sample_records() -> list:
    return [
        record
        for path in SAMPLE_PAGES
        for record in json.loads(path.read_bytes())["release-groups"]
    ]


def make_client(
    server: LoopbackServer, clock: FakeClock, *, rate: float = 1.0, **options: object
) -> MusicBrainzClient:
    return MusicBrainzClient(
        f"{server.url}/ws/2",
        contact=CONTACT,
        clock=clock,
        limiter=RateLimiter(rate, clock),
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def replay(http_server: LoopbackServer) -> LoopbackServer:
    http_server.handler = musicbrainz_replay(bundled_snapshot_root())
    return http_server


def test_pages_through_the_window_politely_over_one_connection(replay: LoopbackServer) -> None:
    clock = FakeClock()
    fetched = make_client(replay, clock).fetch(SAMPLE_DAY)

    assert [request.query["offset"] for request in replay.requests] == ["0", "100", "200"]
    for request in replay.requests:
        assert request.path == "/ws/2/release-group"
        assert request.query["query"] == EXPECTED["query"]  # [D-14 TO D], the three types
        assert (request.query["fmt"], request.query["limit"]) == ("json", "100")
        assert request.headers["user-agent"] == f"musicbutler-pipeline/{__version__} ( {CONTACT} )"
    assert len({request.client_port for request in replay.requests}) == 1, "connection not reused"
    assert clock.sleeps == [1.0, 1.0]  # one request per second, and no other wait

    assert fetched.requests == 3
    assert fetched.records_seen == 230
    assert fetched.records_skipped == 3
    assert (fetched.window_start, fetched.window_end) == (date(2026, 11, 9), SAMPLE_DAY)
    assert {g.mbid for g in dated(fetched, SAMPLE_DAY)} == set(
        EXPECTED["exact_date_release_groups"]
    )


def test_raw_pages_are_the_bytes_received_and_rederive_the_same_day(replay: LoopbackServer) -> None:
    fetched = make_client(replay, FakeClock()).fetch(SAMPLE_DAY)
    assert [page.body for page in fetched.pages] == [path.read_bytes() for path in SAMPLE_PAGES]
    assert [page.sha256 for page in fetched.pages] == [
        hashlib.sha256(path.read_bytes()).hexdigest() for path in SAMPLE_PAGES
    ]
    assert [(p.offset, p.record_count, p.total_count) for p in fetched.pages] == [
        (0, 100, 230),
        (100, 100, 230),
        (200, 30, 230),
    ]
    again = rederive(fetched.pages, SAMPLE_DAY, lookback_days=14)
    assert again.release_groups == fetched.release_groups


def test_partial_dates_never_count_and_every_credited_artist_does(replay: LoopbackServer) -> None:
    fetched = make_client(replay, FakeClock()).fetch(SAMPLE_DAY)
    by_mbid = {group.mbid: group for group in fetched.release_groups}
    partial = [r for r in sample_records() if len(str(r.get("first-release-date") or "")) != 10]
    assert len(partial) >= 4
    assert not {r.get("id") for r in partial} & set(by_mbid)

    multi = [
        r
        for r in sample_records()
        if len(r.get("artist-credit") or []) > 1 and r.get("id") in by_mbid
    ]
    assert len(multi) >= 20
    for r in multi:
        credited = [credit["artist"]["id"] for credit in r["artist-credit"]]
        assert [artist.mbid for artist in by_mbid[r["id"]].artists] == credited
    corazon = next(g for g in fetched.release_groups if g.title == "Corazón de Papel")
    assert corazon.credit == "Bad Bunny, ROSALÍA & Ulises Brava"


def test_malformed_records_are_logged_with_their_id_and_skipped(
    replay: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="musicbutler_pipeline.sources.musicbrainz"):
        fetched = make_client(replay, FakeClock()).fetch(SAMPLE_DAY)
    assert fetched.skipped_ids == (
        "(no id)",
        "81c86796-569d-5e3f-8d42-634b8066488",
        "94520e56-da58-563a-afea-45b1159bcdd2",
    )
    logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 3
    assert "81c86796-569d-5e3f-8d42-634b8066488" in logged[1]
    assert "94520e56-da58-563a-afea-45b1159bcdd2" in logged[2]


def test_503_with_retry_after_is_honoured_then_succeeds(replay: LoopbackServer) -> None:
    replay.handler = scripted(
        replay.handler, at_offset(100), [Reply(503, b"busy", {"Retry-After": "2"})]
    )
    clock = FakeClock()
    fetched = make_client(replay, clock).fetch(SAMPLE_DAY)
    assert [r.query["offset"] for r in replay.requests] == ["0", "100", "100", "200"]
    assert clock.sleeps == [1.0, 2.0, 1.0]  # the retry waited what the server asked
    assert fetched.records_seen == 230


def test_429_without_retry_after_backs_off_exponentially_with_jitter(
    replay: LoopbackServer,
) -> None:
    replay.handler = scripted(replay.handler, at_offset(0), [Reply(429), Reply(429), Reply(429)])
    clock = FakeClock()
    fetched = make_client(
        replay, clock, retry=RetryPolicy(attempts=5, backoff=4.0, max_backoff=30.0, jitter=True)
    ).fetch(SAMPLE_DAY)
    assert [r.query["offset"] for r in replay.requests] == ["0", "0", "0", "0", "100", "200"]
    first, second, third = clock.sleeps[:3]
    assert 2.0 <= first <= 4.0
    assert 4.0 <= second <= 8.0
    assert 8.0 <= third <= 16.0
    assert clock.sleeps[3:] == [1.0, 1.0]
    assert fetched.records_seen == 230


def test_a_page_that_never_succeeds_fails_naming_url_and_status(replay: LoopbackServer) -> None:
    replay.handler = scripted(replay.handler, at_offset(200), [Reply(503)] * 100)
    clock = FakeClock()
    with pytest.raises(MusicBrainzUnavailable) as raised:
        make_client(replay, clock).fetch(SAMPLE_DAY)
    message = str(raised.value)
    assert f"{replay.url}/ws/2/release-group?" in message
    assert "offset=200" in message
    assert "HTTP 503 after 5 attempt(s)" in message
    assert (raised.value.status, raised.value.attempts) == (503, 5)
    assert len(replay.requests_to("/release-group")) == 2 + 5
    assert max(clock.sleeps) <= 30.0


def test_retry_after_longer_than_we_wait_gives_up_at_once(replay: LoopbackServer) -> None:
    replay.handler = scripted(
        replay.handler, at_offset(0), [Reply(503, headers={"Retry-After": "3600"})]
    )
    clock = FakeClock()
    client = make_client(replay, clock)
    with pytest.raises(MusicBrainzUnavailable, match=r"asked to wait 3600 s.*giving up"):
        client.fetch(SAMPLE_DAY)
    assert len(replay.requests) == 1
    assert clock.sleeps == []
    with client.limiter.slot():  # the next request to the host still waits what was asked
        pass
    assert clock.sleeps == [3600.0]


def test_a_request_that_hangs_times_out_and_is_reported(replay: LoopbackServer) -> None:
    replay.handler = always(Reply(stall=True))
    clock = FakeClock()
    with pytest.raises(MusicBrainzUnavailable, match=r"Timeout.*after 2 attempt") as raised:
        make_client(
            replay, clock, timeout=0.3, retry=RetryPolicy(attempts=2, backoff=4.0, jitter=True)
        ).fetch(SAMPLE_DAY)
    assert "offset=0" in str(raised.value)
    assert raised.value.status is None  # no answer at all, not an HTTP status
    assert len(clock.sleeps) == 1 and 2.0 <= clock.sleeps[0] <= 4.0  # backed off, then retried
    # The server may not have read the second request yet when the client gave up on it.
    assert 1 <= len(replay.requests) <= 2


def test_an_error_that_is_not_worth_retrying_fails_at_once(replay: LoopbackServer) -> None:
    replay.handler = always(Reply(400, b'{"error": "bad query"}'))
    with pytest.raises(MusicBrainzError, match=r"offset=0: HTTP 400 .*bad query"):
        make_client(replay, FakeClock()).fetch(SAMPLE_DAY)
    assert len(replay.requests) == 1


def test_paging_stops_at_count_even_across_many_pages(http_server: LoopbackServer) -> None:
    http_server.handler = synthetic_pages(total=250, per_page=100)
    fetched = make_client(http_server, FakeClock()).fetch(date(2026, 11, 23))
    assert [r.query["offset"] for r in http_server.requests] == ["0", "100", "200"]
    assert fetched.records_seen == 250
    assert len(fetched.release_groups) == 250


def test_no_contact_no_request(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.handler = synthetic_pages(total=1, per_page=100)
    with pytest.raises(ContactRequired):
        MusicBrainzClient(f"{http_server.url}/ws/2", contact="")
    monkeypatch.delenv("MUSICBUTLER_CONTACT", raising=False)
    source = MusicBrainzReleaseSource(url=f"{http_server.url}/ws/2")
    with pytest.raises(SettingsError, match="MUSICBUTLER_CONTACT"):
        source.fetch(SAMPLE_DAY)
    assert http_server.requests == []
    # With a contact, the same resource calls the service and says who it is.
    monkeypatch.setenv("MUSICBUTLER_CONTACT", "https://ops.example.org/musicbutler")
    source.fetch(SAMPLE_DAY)
    [request] = http_server.requests
    assert request.headers["user-agent"].endswith("( https://ops.example.org/musicbutler )")


# --- The rate limit, measured at the server with the real clock -------------------------------

RATE = 20.0  # requests per second: quick to test, same code as the default 1/s
# The limiter starts a request 1/RATE after the previous one *finished*, and the server records
# a request before it answers it, so arrivals are at least this far apart, with no tolerance.
INTERVAL = 1 / RATE


def synthetic_pages(*, total: int, per_page: int) -> Handler:
    def handle(request: RecordedRequest) -> Reply:
        offset = int(request.query.get("offset", "0"))
        records = [
            {
                "id": f"{n:08d}-0000-4000-8000-000000000000",
                "title": f"Record {n}",
                "first-release-date": "2026-11-23",
                "artist-credit": [
                    {"name": "X", "artist": {"id": "11111111-1111-4111-8111-111111111111"}}
                ],
            }
            for n in range(offset, min(total, offset + per_page))
        ]
        return Reply.json({"count": total, "offset": offset, "release-groups": records})

    return handle


def gaps(requests: list[RecordedRequest]) -> list[float]:
    arrivals = sorted(request.arrived for request in requests)
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def test_request_spacing_measured_at_the_server_holds(http_server: LoopbackServer) -> None:
    http_server.handler = synthetic_pages(total=1000, per_page=100)
    client = MusicBrainzClient(f"{http_server.url}/ws/2", contact=CONTACT, rate=RATE)
    fetched = client.fetch(date(2026, 11, 23))
    assert fetched.requests == 10
    spacing = gaps(http_server.requests)
    assert len(spacing) == 9
    assert min(spacing) >= INTERVAL, spacing
    span = http_server.requests[-1].arrived - http_server.requests[0].arrived
    assert 9 / span <= RATE * 1.05


def test_the_rate_limit_is_shared_by_every_client_in_the_process(
    http_server: LoopbackServer,
) -> None:
    http_server.handler = synthetic_pages(total=500, per_page=100)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            MusicBrainzClient(f"{http_server.url}/ws/2", contact=CONTACT, rate=RATE).fetch(
                date(2026, 11, 23)
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(http_server.requests) == 15
    assert min(gaps(http_server.requests)) >= INTERVAL


def test_recorded_pages_go_through_the_same_client(tmp_path: Path) -> None:
    # The bundled snapshot path (file:// URL) pages and validates exactly like the live one.
    source = MusicBrainzReleaseSource(url=bundled_snapshot_root().as_uri())
    fetched = source.fetch(SAMPLE_DAY)
    assert (fetched.requests, fetched.records_seen, fetched.records_skipped) == (3, 230, 3)
    assert [page.sha256 for page in fetched.pages] == [
        hashlib.sha256(path.read_bytes()).hexdigest() for path in SAMPLE_PAGES
    ]

"""ListenBrainz top artists as libraries, against a real HTTP server on 127.0.0.1.

The client on its own (paging, both MBID shapes, 204, 404, 429 with X-RateLimit-Reset-In), then
the user_libraries asset syncing follows into the warehouse.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime

from dagster import DagsterInstance, materialize
from sqlalchemy import Engine, insert, select, update

from musicbutler_pipeline import __version__
from musicbutler_pipeline.assets import user_libraries
from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    ListenBrainzLibrarySource,
    WarehouseResource,
)
from musicbutler_pipeline.sources.http import RateLimiter
from musicbutler_pipeline.sources.listenbrainz import (
    LibraryStatus,
    ListenBrainzClient,
    fetch_libraries,
)
from musicbutler_pipeline.warehouse.schema import library_artists, subscribers
from tests.fixtures.loopback import FakeClock, Handler, LoopbackServer, RecordedRequest, Reply

pytest_plugins = ["tests.fixtures.http_server"]

CONTACT = "ops@example.org"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def artist(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"test:artist:{name}"))


def entry(name: str, *, shape: str = "mbid", listens: int = 10) -> dict:
    if shape == "mbid":
        return {"artist_mbid": artist(name), "artist_name": name, "listen_count": listens}
    if shape == "mbids":
        return {"artist_mbids": [artist(name)], "artist_name": name, "listen_count": listens}
    return {"artist_mbid": None, "artist_name": name, "listen_count": listens}  # unmatched


def listenbrainz(users: dict[str, list[dict] | int]) -> Handler:
    """``/1/stats/user/<user>/artists``: a user's entries paged by count/offset, or a status."""

    def handle(request: RecordedRequest) -> Reply:
        parts = request.path.split("/")
        if parts[:4] != ["", "1", "stats", "user"] or parts[5:] != ["artists"]:
            return Reply(404, b'{"error": "unknown endpoint"}')
        answer = users.get(parts[4], 404)
        if isinstance(answer, int):
            return Reply(answer, b"" if answer == 204 else b'{"code": 404, "error": "no user"}')
        count = int(request.query.get("count", "25"))
        offset = int(request.query.get("offset", "0"))
        return Reply.json(
            {
                "payload": {
                    "artists": answer[offset : offset + count],
                    "count": len(answer[offset : offset + count]),
                    "total_artist_count": len(answer),
                    "offset": offset,
                    "range": request.query.get("range"),
                    "user_id": parts[4],
                }
            }
        )

    return handle


def client(server: LoopbackServer, clock: FakeClock, **options: object) -> ListenBrainzClient:
    return ListenBrainzClient(
        f"{server.url}/1",
        contact=CONTACT,
        clock=clock,
        limiter=RateLimiter(2.0, clock),
        rng=random.Random(3),
        **options,  # type: ignore[arg-type]
    )


# --- The client ------------------------------------------------------------------------------


def test_top_artists_are_paged_and_both_mbid_shapes_are_read(http_server: LoopbackServer) -> None:
    entries = [entry(f"new {n}") for n in range(120)]
    entries += [entry(f"old {n}", shape="mbids") for n in range(100)]
    entries += [entry("unmatched", shape="none")]
    entries += [
        {"artist_mbids": [artist("duo a"), artist("duo b")], "artist_name": "A & B"},
        {"artist_mbids": ["not-a-uuid"], "artist_name": "Broken"},
    ]
    http_server.handler = listenbrainz({"alice": entries})
    clock = FakeClock()
    with client(http_server, clock, max_artists=500, page_size=100) as lb:
        library = lb.top_artists("alice")

    assert library.status is LibraryStatus.OK
    assert [r.query["offset"] for r in http_server.requests] == ["0", "100", "200"]
    for request in http_server.requests:
        assert request.path == "/1/stats/user/alice/artists"
        assert (request.query["range"], request.query["count"]) == ("all_time", "100")
        assert request.headers["user-agent"] == f"musicbutler-pipeline/{__version__} ( {CONTACT} )"
    assert len({r.client_port for r in http_server.requests}) == 1
    assert clock.sleeps == [0.5, 0.5]
    follows = library.follows()
    assert len(follows) == 120 + 100 + 2
    assert follows[artist("new 7")] == "new 7"
    assert follows[artist("old 99")] == "old 99"
    assert follows[artist("duo b")] == "A & B"
    assert library.entries_without_mbid == 2  # the unmatched artist and the broken MBID
    assert library.requests == 3


def test_max_artists_bounds_what_is_asked_for(http_server: LoopbackServer) -> None:
    http_server.handler = listenbrainz({"alice": [entry(f"a{n}") for n in range(300)]})
    with client(http_server, FakeClock(), max_artists=150, page_size=100) as lb:
        library = lb.top_artists("alice")
    assert [(r.query["offset"], r.query["count"]) for r in http_server.requests] == [
        ("0", "100"),
        ("100", "50"),
    ]
    assert len(library.artists) == 150


def test_204_means_statistics_not_computed_yet(http_server: LoopbackServer) -> None:
    http_server.handler = listenbrainz({"newcomer": 204})
    with client(http_server, FakeClock()) as lb:
        library = lb.top_artists("newcomer")
    assert (library.status, library.artists, library.requests) == (
        LibraryStatus.STATS_NOT_COMPUTED,
        (),
        1,
    )


def test_404_is_an_unknown_user_reported_with_the_url(http_server: LoopbackServer) -> None:
    http_server.handler = listenbrainz({})
    with client(http_server, FakeClock()) as lb:
        library = lb.top_artists("no such/user")
    assert library.status is LibraryStatus.UNKNOWN_USER
    assert "/1/stats/user/no%20such%2Fuser/artists" in (library.error or "")
    assert http_server.requests[0].path == "/1/stats/user/no%20such%2Fuser/artists"


def test_429_waits_for_x_ratelimit_reset_in_then_succeeds(http_server: LoopbackServer) -> None:
    stub = listenbrainz({"alice": [entry("a"), entry("b")]})
    replies = iter([Reply(429, b"slow down", {"X-RateLimit-Reset-In": "7"})])
    http_server.handler = lambda request: next(replies, None) or stub(request)
    clock = FakeClock()
    with client(http_server, clock) as lb:
        library = lb.top_artists("alice")
    assert library.status is LibraryStatus.OK
    assert len(library.artists) == 2
    assert len(http_server.requests) == 2
    assert clock.sleeps == [7.0]


def test_an_exhausted_allowance_pauses_before_the_next_request(
    http_server: LoopbackServer,
) -> None:
    stub = listenbrainz({"alice": [entry(f"a{n}") for n in range(150)]})

    def handle(request: RecordedRequest) -> Reply:
        reply = stub(request)
        if request.query.get("offset") == "0":
            reply.headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-In": "4"})
        return reply

    http_server.handler = handle
    clock = FakeClock()
    with client(http_server, clock, max_artists=150, page_size=100) as lb:
        assert lb.top_artists("alice").status is LibraryStatus.OK
    assert clock.sleeps == [4.0]  # not the 0.5 s spacing: the window had to reset first


def test_a_user_that_keeps_failing_is_reported_not_raised(http_server: LoopbackServer) -> None:
    http_server.handler = lambda _request: Reply(502, b"bad gateway")
    with client(http_server, FakeClock(), retry=RetryPolicy(attempts=3, jitter=True)) as lb:
        library = lb.top_artists("alice")
    assert library.status is LibraryStatus.FAILED
    assert "/1/stats/user/alice/artists" in (library.error or "")
    assert "HTTP 502 after 3 attempt(s)" in (library.error or "")
    assert len(http_server.requests) == 3


def test_when_listenbrainz_is_down_the_remaining_users_are_not_attempted(
    http_server: LoopbackServer,
) -> None:
    http_server.handler = lambda _request: Reply(503)
    with client(http_server, FakeClock(), retry=RetryPolicy(attempts=2, jitter=True)) as lb:
        summary = fetch_libraries(lb, ["u1", "u2", "u3", "u4", "u5"], give_up_after=2)
    assert [library.user for library in summary.libraries] == ["u1", "u2"]
    assert summary.not_attempted == ["u3", "u4", "u5"]
    assert len(http_server.requests) == 4


# --- The user_libraries asset ------------------------------------------------------------------


def add_subscriber(engine: Engine, email: str, lb_user: str | None) -> int:
    with engine.begin() as connection:
        return connection.execute(
            insert(subscribers)
            .values(email=email, listenbrainz_user=lb_user, subscribed_at=NOW, updated_at=NOW)
            .returning(subscribers.c.id)
        ).scalar_one()


def add_follow(engine: Engine, subscriber_id: int, name: str, source: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(library_artists).values(
                subscriber_id=subscriber_id,
                artist_mbid=artist(name),
                artist_name=name,
                source=source,
                followed_at=NOW,
            )
        )


def follows(engine: Engine, subscriber_id: int) -> set[tuple[str, str, date | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                library_artists.c.artist_name,
                library_artists.c.source,
                library_artists.c.unfollowed_on,
            ).where(library_artists.c.subscriber_id == subscriber_id)
        ).all()
    return {(name, source, until) for name, source, until in rows}


def sync(engine: Engine, day: date, library_source: object) -> dict:
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [user_libraries],
            partition_key=day.isoformat(),
            instance=instance,
            resources={
                "warehouse": WarehouseResource(
                    url=engine.url.render_as_string(hide_password=False)
                ),
                "library_source": library_source,
            },
        )
    [event] = result.asset_materializations_for_node(user_libraries.op.name)
    return {key: value.value for key, value in event.metadata.items()}


def test_user_libraries_syncs_listenbrainz_follows_and_never_touches_csv_ones(
    sqlite_engine: Engine, http_server: LoopbackServer
) -> None:
    alice = add_subscriber(sqlite_engine, "alice@example.org", "alice")
    bob = add_subscriber(sqlite_engine, "bob@example.org", "bob")
    carol = add_subscriber(sqlite_engine, "carol@example.org", "carol")
    dave = add_subscriber(sqlite_engine, "dave@example.org", None)
    add_follow(sqlite_engine, alice, "Xavier", "csv")
    add_follow(sqlite_engine, bob, "Bob's old favourite", "listenbrainz")
    add_follow(sqlite_engine, dave, "Dave's pick", "csv")
    users: dict[str, list[dict] | int] = {
        "alice": [entry("Xavier"), entry("Yara", shape="mbids"), entry("Zed")],
        "bob": 204,
    }  # carol: 404
    http_server.handler = listenbrainz(users)
    source = ListenBrainzLibrarySource(url=f"{http_server.url}/1", rate=1000)

    first = sync(sqlite_engine, date(2026, 11, 22), source)
    assert follows(sqlite_engine, alice) == {
        ("Xavier", "csv", None),  # already followed from the CSV: left as it is
        ("Yara", "listenbrainz", None),
        ("Zed", "listenbrainz", None),
    }
    assert follows(sqlite_engine, bob) == {("Bob's old favourite", "listenbrainz", None)}
    assert follows(sqlite_engine, carol) == set()
    assert follows(sqlite_engine, dave) == {("Dave's pick", "csv", None)}
    assert first["listenbrainz_users"] == 3
    assert (first["listenbrainz_synced"], first["listenbrainz_follows_added"]) == (1, 2)
    assert first["listenbrainz_stats_not_computed"] == 1
    assert first["listenbrainz_unknown_users"] == 1
    assert "bob | stats_not_computed" in first["listenbrainz_problems"]
    assert "carol | unknown_user" in first["listenbrainz_problems"]

    users["alice"] = [entry("Zed"), entry("Wren")]  # Yara and Xavier left her top artists
    second = sync(sqlite_engine, date(2026, 11, 23), source)
    assert follows(sqlite_engine, alice) == {
        ("Xavier", "csv", None),  # a CSV follow is never ended by ListenBrainz
        ("Yara", "listenbrainz", date(2026, 11, 23)),
        ("Zed", "listenbrainz", None),
        ("Wren", "listenbrainz", None),
    }
    assert (second["listenbrainz_follows_added"], second["listenbrainz_follows_ended"]) == (1, 1)
    assert second["follows_removed_on_day"] == 1

    again = sync(sqlite_engine, date(2026, 11, 23), source)  # a re-run changes nothing
    assert (again["listenbrainz_follows_added"], again["listenbrainz_follows_ended"]) == (0, 0)
    assert again["listenbrainz_follows_unchanged"] == 2
    assert len(follows(sqlite_engine, alice)) == 4


def test_unlinking_listenbrainz_ends_its_follows(
    sqlite_engine: Engine, http_server: LoopbackServer
) -> None:
    alice = add_subscriber(sqlite_engine, "alice@example.org", "alice")
    add_subscriber(sqlite_engine, "bob@example.org", "bob")
    add_follow(sqlite_engine, alice, "Yara", "listenbrainz")
    add_follow(sqlite_engine, alice, "Xavier", "csv")
    with sqlite_engine.begin() as connection:
        connection.execute(
            update(subscribers).where(subscribers.c.id == alice).values(listenbrainz_user=None)
        )
    http_server.handler = listenbrainz({"bob": [entry("Bo")]})
    metadata = sync(
        sqlite_engine,
        date(2026, 11, 23),
        ListenBrainzLibrarySource(url=f"{http_server.url}/1", rate=1000),
    )
    assert follows(sqlite_engine, alice) == {
        ("Yara", "listenbrainz", date(2026, 11, 23)),
        ("Xavier", "csv", None),
    }
    assert metadata["listenbrainz_follows_ended"] == 1
    assert [r.path for r in http_server.requests] == ["/1/stats/user/bob/artists"]


def test_no_listenbrainz_user_no_request(
    sqlite_engine: Engine, http_server: LoopbackServer
) -> None:
    subscriber = add_subscriber(sqlite_engine, "dave@example.org", None)
    add_follow(sqlite_engine, subscriber, "Dave's pick", "csv")
    unsubscribed = add_subscriber(sqlite_engine, "gone@example.org", "gone")
    with sqlite_engine.begin() as connection:
        connection.execute(
            update(subscribers).where(subscribers.c.id == unsubscribed).values(unsubscribed_at=NOW)
        )
    http_server.handler = listenbrainz({"gone": [entry("a")]})
    metadata = sync(
        sqlite_engine, date(2026, 11, 23), ListenBrainzLibrarySource(url=f"{http_server.url}/1")
    )
    assert http_server.requests == []
    assert metadata["listenbrainz_users"] == 0
    assert metadata["follows"] == 1


def test_the_csv_only_source_never_calls_out(
    sqlite_engine: Engine, http_server: LoopbackServer
) -> None:
    add_subscriber(sqlite_engine, "alice@example.org", "alice")
    metadata = sync(sqlite_engine, date(2026, 11, 23), CsvOnlyLibrarySource())
    assert http_server.requests == []
    assert metadata["listenbrainz"] == "not imported (CSV-only library source)"


def test_definitions_import_from_listenbrainz_by_default() -> None:
    resources = build_definitions().resources
    assert isinstance(resources["library_source"], ListenBrainzLibrarySource)
    chosen = build_definitions(library_source=CsvOnlyLibrarySource()).resources
    assert isinstance(chosen["library_source"], CsvOnlyLibrarySource)

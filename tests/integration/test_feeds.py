"""Feeds over real HTTP (uvicorn on a loopback port), parsed with feedparser and icalendar, on
SQLite and PostgreSQL: exactly what was announced to that subscriber in the last 90 days."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import feedparser
import httpx
import icalendar
import pytest
from sqlalchemy import Engine, insert

from musicbutler_pipeline.domain.feeds import feed_links
from musicbutler_pipeline.warehouse.feeds import feed_secret, feed_secrets_for_day
from musicbutler_pipeline.warehouse.schema import announcements, drops, release_group_links
from musicbutler_pipeline.warehouse.subscribers import unsubscribe_by_id
from musicbutler_pipeline.web.app import create_app
from tests.builders import add_subscriber, mbid, record_sent_email, release_group, store_releases
from tests.integration.test_unsubscribe_web import KEY, serving

TODAY = date(2026, 11, 23)
CLOCK = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE = "https://music.example.org"


def _announce(engine: Engine, day: date, subscriber_id: int, *titles: str) -> None:
    groups = [release_group(title, "Artist A", released=day.isoformat()) for title in titles]
    store_releases(engine, day, *groups)
    with engine.begin() as connection:
        send_id = record_sent_email(
            connection,
            day=day,
            subscriber_id=subscriber_id,
            recipient="x@example.org",
            release_groups=len(groups),
        )
        connection.execute(
            insert(announcements),
            [
                {
                    "subscriber_id": subscriber_id,
                    "release_group_mbid": group.mbid,
                    "partition_date": day,
                    "send_id": send_id,
                    "announced_at": datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
                }
                for group in groups
            ],
        )


def _decoded(event: icalendar.Component, name: str) -> date:
    value = event.decoded(name)
    assert isinstance(value, date)  # a datetime is a date too
    return value


def _path(url: str) -> str:
    return url.removeprefix(BASE)


def test_feeds_hold_exactly_what_was_announced_in_the_last_90_days(engine: Engine) -> None:
    zoe = add_subscriber(engine, "zoe@example.org")
    ben = add_subscriber(engine, "ben@example.org")
    _announce(engine, TODAY, zoe, "Today")
    _announce(engine, TODAY - timedelta(days=90), zoe, "Ninety days ago")
    _announce(engine, TODAY - timedelta(days=91), zoe, "Too old")
    _announce(engine, TODAY - timedelta(days=3), ben, "Ben's")
    links = feed_links(BASE, feed_secret(engine, zoe))
    assert feed_secret(engine, zoe) == links.atom.rpartition("/")[2].removesuffix(".atom")

    with serving(create_app(engine, KEY, base_url=BASE, clock=lambda: CLOCK)) as web:
        atom = web.get(_path(links.atom))
        assert atom.status_code == 200
        assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert atom.headers["x-content-type-options"] == "nosniff"
        parsed = feedparser.parse(atom.content)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert sorted(entry.title for entry in parsed.entries) == [
            "Artist A: Ninety days ago",
            "Artist A: Today",
        ]
        assert {entry.id for entry in parsed.entries} == {
            f"https://musicbrainz.org/release-group/{release_group(t, 'artist:a').mbid}"
            for t in ("Today", "Ninety days ago")
        }
        assert parsed.feed.links[0].href == links.atom

        ics = web.get(_path(links.icalendar))
        assert ics.status_code == 200
        assert ics.headers["content-type"] == "text/calendar; charset=utf-8"
        calendar = icalendar.Calendar.from_ical(ics.content)
        events = sorted(calendar.walk("VEVENT"), key=lambda event: _decoded(event, "DTSTART"))
        assert [str(event["SUMMARY"]) for event in events] == [
            "Artist A: Ninety days ago",
            "Artist A: Today",
        ]
        starts = [_decoded(event, "DTSTART") for event in events]
        assert starts == [TODAY - timedelta(days=90), TODAY]
        assert not any(isinstance(start, datetime) for start in starts)  # all-day events
        stamps = [_decoded(event, "DTSTAMP") for event in events]
        assert all(isinstance(stamp, datetime) and stamp.tzinfo is not None for stamp in stamps)
        first_uids = [str(event["UID"]) for event in events]
        assert len(set(first_uids)) == 2

        # Conditional GET: the same feed again is 304, by ETag and by date.
        etag = atom.headers["etag"]
        assert web.get(_path(links.atom), headers={"If-None-Match": etag}).status_code == 304
        since = atom.headers["last-modified"]
        assert web.get(_path(links.atom), headers={"If-Modified-Since": since}).status_code == 304

        # Rotating: the old URLs answer 404, the new ones the same events with the same UIDs.
        rotated = feed_links(BASE, feed_secret(engine, zoe, rotate=True))
        assert rotated != links
        assert web.get(_path(links.atom)).status_code == 404
        assert web.get(_path(links.icalendar)).status_code == 404
        again = icalendar.Calendar.from_ical(web.get(_path(rotated.icalendar)).content)
        uids = sorted(str(event["UID"]) for event in again.walk("VEVENT"))
        assert uids == sorted(first_uids)

        # Unsubscribed: 404, and the page says nothing more.
        unsubscribe_by_id(engine, zoe)
        gone = web.get(_path(rotated.atom))
        assert gone.status_code == 404
        assert "Page not found" in gone.text
        for bad in ("/feeds/short.atom", f"/feeds/{'A' * 32}.ics", "/feeds/x.rss"):
            assert web.get(bad).status_code == 404


def test_feeds_carry_the_listen_links_of_what_was_announced(engine: Engine) -> None:
    zoe = add_subscriber(engine, "zoe@example.org")
    _announce(engine, TODAY, zoe, "With links", "Without links")
    with_links = release_group("With links", "Artist A").mbid
    spotify, bandcamp = "https://open.spotify.com/album/x1", "https://artist-a.bandcamp.com/album/y"
    with engine.begin() as connection:
        connection.execute(
            insert(release_group_links),
            [
                {
                    "release_group_mbid": with_links,
                    "service": service,
                    "url": url,
                    "partition_date": TODAY,
                    "fetched_at": CLOCK,
                }
                for service, url in (("Bandcamp", bandcamp), ("Spotify", spotify))
            ],
        )
    links = feed_links(BASE, feed_secret(engine, zoe))
    with serving(create_app(engine, KEY, base_url=BASE, clock=lambda: CLOCK)) as web:
        parsed = feedparser.parse(web.get(_path(links.atom)).content)
        calendar = icalendar.Calendar.from_ical(web.get(_path(links.icalendar)).content)
    entries = {entry.title: entry for entry in parsed.entries}
    related = [
        (link.title, link.href)
        for link in entries["Artist A: With links"].links
        if link.rel == "related"
    ]
    assert related == [("Spotify", spotify), ("Bandcamp", bandcamp)]  # the digest's order
    assert [link.rel for link in entries["Artist A: Without links"].links] == ["alternate"]
    descriptions = {str(e["SUMMARY"]): str(e["DESCRIPTION"]) for e in calendar.walk("VEVENT")}
    assert descriptions["Artist A: With links"].endswith(
        f"Listen: Spotify {spotify}, Bandcamp {bandcamp}"
    )
    assert "Listen" not in descriptions["Artist A: Without links"]


def test_an_empty_feed_parses_and_secrets_are_made_once_per_subscriber(engine: Engine) -> None:
    zoe = add_subscriber(engine, "zoe@example.org")
    ben = add_subscriber(engine, "ben@example.org")
    store_releases(engine, TODAY, release_group("Owed", "Artist A"))
    with engine.begin() as connection:
        connection.execute(
            insert(drops),
            [
                {
                    "partition_date": TODAY,
                    "subscriber_id": sid,
                    "release_group_mbid": release_group("Owed", "Artist A").mbid,
                    "artist_mbid": mbid("artist:Artist A"),
                    "artist_name": "Artist A",
                }
                for sid in (zoe, ben)
            ],
        )
    made = feed_secrets_for_day(engine, TODAY)
    assert set(made) == {zoe, ben}
    assert len(set(made.values())) == 2
    assert feed_secrets_for_day(engine, TODAY) == made  # made once, then read
    assert feed_secret(engine, zoe) == made[zoe]
    with serving(create_app(engine, KEY, base_url=BASE, clock=lambda: CLOCK)) as web:
        response = web.get(_path(feed_links(BASE, made[ben]).atom))
        parsed = feedparser.parse(response.content)
        assert (response.status_code, parsed.bozo, parsed.entries) == (200, False, [])


def test_a_feed_request_is_logged_without_its_secret(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    secret = feed_secret(sqlite_engine, zoe)
    with serving(create_app(sqlite_engine, KEY)) as web:
        assert isinstance(web.get(f"/feeds/{secret}.ics"), httpx.Response)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("musicbutler")]
    assert any('"GET /feeds/… HTTP/1.1" 200' in message for message in messages)
    assert not any(secret in message for message in messages)


def test_musicbutler_feeds_prints_rotates_and_refuses(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from musicbutler_pipeline.cli import main
    from musicbutler_pipeline.warehouse.engine import make_engine

    monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("MUSICBUTLER_BASE_URL", BASE)
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(sqlite_url)
    try:
        zoe = add_subscriber(engine, "zoe@example.org")
        capsys.readouterr()
        assert main(["feeds", "Zoe@Example.org"]) == 0
        first = capsys.readouterr().out
        links = feed_links(BASE, feed_secret(engine, zoe))
        assert first.splitlines() == [f"Atom:       {links.atom}", f"iCalendar:  {links.icalendar}"]
        assert main(["feeds", "zoe@example.org"]) == 0
        assert capsys.readouterr().out == first  # made once
        assert main(["feeds", "zoe@example.org", "--rotate"]) == 0
        rotated = capsys.readouterr().out
        assert "old ones now answer 404" in rotated
        assert links.atom not in rotated
        assert feed_links(BASE, feed_secret(engine, zoe)).atom in rotated
        assert main(["feeds", "nobody@example.org"]) == 1
        assert capsys.readouterr().err == "musicbutler: no subscriber nobody@example.org\n"
        assert main(["feeds", "not-an-address"]) == 2
        unsubscribe_by_id(engine, zoe)
        assert main(["feeds", "zoe@example.org"]) == 1
        assert "unsubscribed" in capsys.readouterr().err
    finally:
        engine.dispose()

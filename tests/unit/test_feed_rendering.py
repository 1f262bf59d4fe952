"""The feeds' rendering (pure): hostile titles stay text, output is stable, links are right."""

from __future__ import annotations

from datetime import UTC, date, datetime

import feedparser
import icalendar

from musicbutler_pipeline.domain.feeds import (
    FeedRelease,
    SubscriberFeed,
    feed_links,
    render_atom,
    render_icalendar,
)

NASTY = 'Love & <Hate>\x00\x1b\u2028 ]]> "Quotes"\ufffe; \\, Commas'
SECRET = "s" * 32


def _feed(*releases: FeedRelease) -> SubscriberFeed:
    return SubscriberFeed(subscriber_id=7, secret=SECRET, releases=releases)


def _release(title: str, released: date | None = date(2026, 11, 20)) -> FeedRelease:
    return FeedRelease(
        mbid="01c53a7a-6906-59b7-9018-1f4060022bc3",
        title=title,
        artist_credit="Björk feat. ROSALÍA",
        type_label="Album + Live",
        release_date=released,
        first_release_date=released.isoformat() if released else "2026",
        partition_date=date(2026, 11, 23),
        announced_at=datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
    )


def test_links_are_under_the_base_url() -> None:
    links = feed_links("https://music.example.org/", SECRET)
    assert links.atom == f"https://music.example.org/feeds/{SECRET}.atom"
    assert links.icalendar == f"https://music.example.org/feeds/{SECRET}.ics"


def test_hostile_titles_parse_as_text_in_both_feeds() -> None:
    feed = _feed(_release(NASTY))
    parsed = feedparser.parse(render_atom(feed, base_url="https://m.example"))
    assert not parsed.bozo, parsed.get("bozo_exception")
    (entry,) = parsed.entries
    assert entry.title.startswith("Björk feat. ROSALÍA: Love & <Hate>")
    assert "\x00" not in entry.title and "\x1b" not in entry.title
    (event,) = icalendar.Calendar.from_ical(
        render_icalendar(feed, base_url="https://m.example")
    ).walk("VEVENT")
    assert str(event["SUMMARY"]).endswith('"Quotes"; \\, Commas')


def test_rendering_is_stable_and_an_unknown_day_falls_back_to_the_announcement() -> None:
    feed = _feed(_release("Yearly", released=None))
    assert render_atom(feed, base_url="b") == render_atom(feed, base_url="b")
    assert render_icalendar(feed, base_url="b") == render_icalendar(feed, base_url="b")
    (event,) = icalendar.Calendar.from_ical(render_icalendar(feed, base_url="b")).walk("VEVENT")
    assert event.decoded("DTSTART") == date(2026, 11, 23)
    empty = feedparser.parse(render_atom(_feed(), base_url="b"))
    assert (empty.bozo, empty.entries) == (False, [])

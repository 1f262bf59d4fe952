"""The set-based drop computation, on SQLite and PostgreSQL."""

from datetime import date, timedelta

from sqlalchemy import Engine, insert, select

from musicbutler_pipeline.domain.models import SourcePage
from musicbutler_pipeline.warehouse.digests import iter_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.pages import replace_source_pages
from musicbutler_pipeline.warehouse.schema import announcements, drops
from musicbutler_pipeline.warehouse.subscribers import unsubscribe
from tests.builders import (
    NOW,
    add_subscriber,
    follow,
    mbid,
    record_sent_email,
    release_group,
    store_releases,
)

DAY = date(2026, 11, 23)


def _drops(engine: Engine, day: date = DAY) -> set[tuple[int, str, str]]:
    with engine.begin() as connection:
        replace_drops(connection, day)
        rows = connection.execute(
            select(drops.c.subscriber_id, drops.c.release_group_mbid, drops.c.artist_name).where(
                drops.c.partition_date == day
            )
        ).all()
    return {tuple(row) for row in rows}


def test_followed_artists_releases_of_the_day_only(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Björk")
    store_releases(
        engine, DAY, release_group("Fossora II", "Björk"), release_group("Other", "Nobody Followed")
    )
    store_releases(
        engine, date(2026, 11, 22), release_group("Yesterday", "Björk", released="2026-11-22")
    )
    assert _drops(engine) == {(ana, mbid("rg:Fossora II"), "Björk")}


def test_every_credited_artist_counts_and_a_release_appears_once(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    follow(engine, ana, "Beyoncé")
    follow(engine, ana, "Jay-Z")
    follow(engine, ben, "Jay-Z")
    duet = release_group("Duet", "Beyoncé", "Jay-Z", joins=(" & ",))
    store_releases(engine, DAY, duet)
    # Ana follows both credited artists: one drop, under the artist credited first.
    # Ben follows only the second-credited artist: still a drop.
    assert _drops(engine) == {(ana, duet.mbid, "Beyoncé"), (ben, duet.mbid, "Jay-Z")}


def test_release_announced_on_another_day_is_not_repeated(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    for subscriber in (ana, ben):
        follow(engine, subscriber, "Sigur Rós")
    store_releases(engine, DAY, release_group("Ágætis", "Sigur Rós"))
    with engine.begin() as connection:
        send_id = record_sent_email(
            connection,
            day=date(2026, 11, 20),
            subscriber_id=ana,
            recipient="ana@example.com",
            release_groups=1,
        )
        connection.execute(
            insert(announcements).values(
                subscriber_id=ana,
                release_group_mbid=mbid("rg:Ágætis"),
                partition_date=date(2026, 11, 20),
                send_id=send_id,
                announced_at=NOW,
            )
        )
    assert _drops(engine) == {(ben, mbid("rg:Ágætis"), "Sigur Rós")}


def test_announced_for_this_same_day_stays_so_reruns_are_stable(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Sigur Rós")
    store_releases(engine, DAY, release_group("Ágætis", "Sigur Rós"))
    first = _drops(engine)
    assert first  # the drop exists before any announcement
    assert _drops(engine) == first  # idempotent re-computation


def test_unfollowed_and_unsubscribed_get_nothing(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    cy = add_subscriber(engine, "cy@example.com")
    follow(engine, ana, "Adele", unfollowed_on=date(2026, 11, 23))  # removed that very day
    follow(engine, ben, "Adele", unfollowed_on=date(2026, 11, 24))  # removed later: still owed
    follow(engine, cy, "Adele")
    store_releases(engine, DAY, release_group("30 + 1", "Adele"))
    with engine.begin() as connection:
        assert unsubscribe(connection, cy)
        assert not unsubscribe(connection, cy)  # already out: no change
    assert _drops(engine) == {(ben, mbid("rg:30 + 1"), "Adele")}


def test_digests_stream_grouped_by_artist_in_subscriber_order(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com", "Ana")
    ben = add_subscriber(engine, "ben@example.com")
    follow(engine, ana, "Zebra")
    follow(engine, ana, "Abba")
    follow(engine, ben, "Abba")
    store_releases(
        engine,
        DAY,
        release_group("Z1", "Zebra"),
        release_group("A2", "Abba"),
        release_group("A1", "Abba"),
        release_group("Both", "Abba", "Zebra", joins=(" x ",)),
    )
    _drops(engine)
    digests = list(iter_digests(engine, DAY, batch_size=1))  # one subscriber per batch
    assert [d.subscriber.email for d in digests] == ["ana@example.com", "ben@example.com"]
    ana_digest = digests[0]
    assert ana_digest.subscriber.name == "Ana"
    assert [(a.name, [rg.title for rg in a.release_groups]) for a in ana_digest.artists] == [
        ("Abba", ["A1", "A2", "Both"]),
        ("Zebra", ["Z1"]),
    ]
    both = ana_digest.artists[0].release_groups[2]
    assert both.credit == "Abba x Zebra"
    assert len(ana_digest.release_group_mbids) == len(set(ana_digest.release_group_mbids)) == 4


def test_digest_knows_which_earlier_days_were_never_fetched(engine: Engine) -> None:
    """A release dated a day whose run fetched pages was added to MusicBrainz late; one dated a
    day that has no pages (never run) may not have been: the digest is told which days those are."""
    fetched_day, unfetched_day = DAY - timedelta(days=3), DAY - timedelta(days=5)
    ana = add_subscriber(engine, "ana@example.com", "Ana")
    follow(engine, ana, "Abba")
    store_releases(
        engine,
        DAY,
        release_group("Today", "Abba"),
        release_group("Late", "Abba", released=fetched_day.isoformat()),
        release_group("Missed", "Abba", released=unfetched_day.isoformat()),
    )
    page = SourcePage("https://mb.example/ws/2", "q", 0, b"{}", 0, 0, NOW)
    with engine.begin() as connection:
        replace_source_pages(connection, fetched_day, "musicbrainz", [page])
    _drops(engine)
    [digest] = iter_digests(engine, DAY)
    assert digest.unchecked_days == frozenset({unfetched_day})
    assert {rg.title for rg in digest.artists[0].release_groups} == {"Today", "Late", "Missed"}


def _row_versions(engine: Engine) -> dict[tuple[int, str], object]:
    """Each drop row's physical version: PostgreSQL's xmin, SQLite's rowid. A row deleted and
    inserted again gets a new one."""
    version = "xmin::text" if engine.dialect.name == "postgresql" else "rowid"
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"SELECT subscriber_id, release_group_mbid, {version} FROM drops"
        ).all()
    return {(row[0], row[1]): row[2] for row in rows}


def test_a_rerun_rewrites_only_the_drops_that_changed(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    follow(engine, ana, "Björk")
    follow(engine, ben, "Björk")
    follow(engine, ben, "Jay-Z")
    store_releases(
        engine, DAY, release_group("Fossora II", "Björk"), release_group("Blueprint", "Jay-Z")
    )
    first = _drops(engine)
    # A later partition's row written after the day's: on SQLite a row deleted and inserted
    # again then gets a rowid past it, not the one it had.
    tomorrow = DAY + timedelta(days=1)
    store_releases(engine, tomorrow, release_group("Later", "Björk", released="2026-11-24"))
    assert _drops(engine, tomorrow)
    versions = _row_versions(engine)
    assert _drops(engine) == first
    assert _row_versions(engine) == versions  # nothing was written again

    # Ben was told about Blueprint the day before; Ana follows Jay-Z now.
    earlier = DAY - timedelta(days=1)
    with engine.begin() as connection:
        send_id = record_sent_email(
            connection,
            day=earlier,
            subscriber_id=ben,
            recipient="ben@example.com",
            release_groups=1,
        )
        connection.execute(
            insert(announcements).values(
                subscriber_id=ben,
                release_group_mbid=mbid("rg:Blueprint"),
                partition_date=earlier,
                send_id=send_id,
                announced_at=NOW,
            )
        )
    follow(engine, ana, "Jay-Z")
    assert _drops(engine) == first - {(ben, mbid("rg:Blueprint"), "Jay-Z")} | {
        (ana, mbid("rg:Blueprint"), "Jay-Z")
    }
    after = _row_versions(engine)
    unchanged = set(versions) - {(ben, mbid("rg:Blueprint"))}
    assert {key: after[key] for key in unchanged} == {key: versions[key] for key in unchanged}
    assert (ana, mbid("rg:Blueprint")) in after

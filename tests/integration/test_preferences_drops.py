"""replace_drops applies subscriber preferences set-based, on SQLite and PostgreSQL, and says in
drop_exclusions why a followed artist's release group was left out."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from sqlalchemy import Engine, select, text

from musicbutler_pipeline.domain.preferences import Frequency, ReleaseType, parse_release_types
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.imports import import_library
from musicbutler_pipeline.warehouse.preferences import change_preferences, show_preferences
from musicbutler_pipeline.warehouse.retention import prune_drops
from musicbutler_pipeline.warehouse.schema import drop_exclusions, drops
from tests.builders import add_subscriber, follow, mbid, release_group, store_releases
from tests.integration.test_analyst_queries import doc_queries

DAY = date(2026, 11, 23)  # a Monday


def _drops(engine: Engine, day: date = DAY) -> set[tuple[int, str, str]]:
    with engine.begin() as connection:
        replace_drops(connection, day)
        rows = connection.execute(
            select(drops.c.subscriber_id, drops.c.release_group_mbid, drops.c.artist_name).where(
                drops.c.partition_date == day
            )
        ).all()
    return {tuple(row) for row in rows}


def _exclusions(engine: Engine, day: date = DAY) -> set[tuple[int, str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                drop_exclusions.c.subscriber_id,
                drop_exclusions.c.release_group_mbid,
                drop_exclusions.c.artist_mbid,
                drop_exclusions.c.reason,
            ).where(drop_exclusions.c.partition_date == day)
        ).all()
    return {tuple(row) for row in rows}


def test_a_release_group_counts_only_when_every_kind_is_selected(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    for subscriber in (ana, ben):
        follow(engine, subscriber, "Metallica")
    studio = release_group("Studio", "Metallica")
    live = replace(release_group("Live in Helsinki", "Metallica"), secondary_types=("Live",))
    single = replace(release_group("Single", "Metallica"), primary_type="Single")
    soundtrack = replace(release_group("Film", "Metallica"), secondary_types=("Soundtrack",))
    store_releases(engine, DAY, studio, live, single, soundtrack)
    # Ana deselects live: the live album goes although albums stay; and "other" covers the
    # soundtrack. Ben keeps the defaults: everything.
    change_preferences(
        engine, "ana@example.com", release_types=parse_release_types("album,compilation,remix")
    )

    assert _drops(engine) == {
        (ana, studio.mbid, "Metallica"),
        *((ben, rg.mbid, "Metallica") for rg in (studio, live, single, soundtrack)),
    }
    metallica = mbid("artist:Metallica")
    assert _exclusions(engine) == {
        (ana, rg.mbid, metallica, "type_filtered") for rg in (live, single, soundtrack)
    }


def test_broadcasts_only_for_who_selected_them(engine: Engine) -> None:
    """Primary type Broadcast or Other is ``broadcast``, left out by default (no row, or a row
    from before migration 0012); no primary type at all stays ``other``, in the default."""
    ana = add_subscriber(engine, "ana@example.com")  # selects broadcast
    ben = add_subscriber(engine, "ben@example.com")  # no preferences row
    cy = add_subscriber(engine, "cy@example.com")  # a row with the default types
    for subscriber in (ana, ben, cy):
        follow(engine, subscriber, "Radiohead")
    show = replace(release_group("Radio Session", "Radiohead"), primary_type="Broadcast")
    talk = replace(
        release_group("Interview", "Radiohead"),
        primary_type="Other",
        secondary_types=("Interview",),
    )
    untyped = replace(release_group("Untyped", "Radiohead"), primary_type=None)
    store_releases(engine, DAY, show, talk, untyped)
    change_preferences(engine, "ana@example.com", release_types=parse_release_types("all"))
    change_preferences(engine, "cy@example.com", release_types=parse_release_types("default"))

    assert _drops(engine) == {
        *((ana, rg.mbid, "Radiohead") for rg in (show, talk, untyped)),
        (ben, untyped.mbid, "Radiohead"),
        (cy, untyped.mbid, "Radiohead"),
    }
    radiohead = mbid("artist:Radiohead")
    assert _exclusions(engine) == {
        (subscriber, rg.mbid, radiohead, "type_filtered")
        for subscriber in (ben, cy)
        for rg in (show, talk)
    }
    # Broadcast alone is not enough for an interview: its secondary type is "other".
    change_preferences(engine, "ana@example.com", release_types=parse_release_types("broadcast"))
    assert {rg for who, rg, _ in _drops(engine) if who == ana} == {show.mbid}


def test_appearances_off_announces_only_what_a_followed_artist_is_credited_first_on(
    engine: Engine,
) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "SZA")
    follow(engine, ana, "Drake")
    feature = release_group("Gold Leaf", "Kendrick Lamar", "SZA", joins=(" feat. ",))
    own = release_group("SOS", "SZA")
    both = release_group("Duet", "Drake", "SZA", joins=(" & ",))
    store_releases(engine, DAY, feature, own, both)
    change_preferences(engine, "ana@example.com", appearances=False)

    assert _drops(engine) == {(ana, own.mbid, "SZA"), (ana, both.mbid, "Drake")}
    assert _exclusions(engine) == {
        (ana, feature.mbid, mbid("artist:SZA"), "appearance"),
        (ana, both.mbid, mbid("artist:SZA"), "appearance"),
    }


def test_a_blocked_artist_never_announces_but_another_followed_artist_still_does(
    engine: Engine,
) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Beyoncé")
    follow(engine, ana, "Jay-Z")
    duet = release_group("Love & Hate", "Beyoncé", "Jay-Z", joins=(" & ",))
    solo = release_group("Renaissance II", "Beyoncé")
    store_releases(engine, DAY, duet, solo)
    change_preferences(engine, "ana@example.com", block=frozenset({mbid("artist:Beyoncé")}))

    # The duet is listed under Jay-Z now: Beyoncé is credited first, but blocked.
    assert _drops(engine) == {(ana, duet.mbid, "Jay-Z")}
    assert _exclusions(engine) == {
        (ana, duet.mbid, mbid("artist:Beyoncé"), "blocked"),
        (ana, solo.mbid, mbid("artist:Beyoncé"), "blocked"),
    }


def test_blocked_artists_survive_a_library_re_import(engine: Engine, tmp_path) -> None:
    add_subscriber(engine, "ana@example.com")
    library = tmp_path / "library.csv"
    library.write_text(
        f"email,artist_mbid,artist_name\nana@example.com,{mbid('artist:Adele')},Adele\n"
    )
    assert import_library(engine, library).ok
    change_preferences(engine, "ana@example.com", block=frozenset({mbid("artist:Adele")}))
    assert import_library(engine, library).ok
    store_releases(engine, DAY, release_group("30", "Adele"))

    assert show_preferences(engine, "ana@example.com").blocked_artists == {mbid("artist:Adele")}
    assert _drops(engine) == set()


def test_a_weekly_subscriber_gets_the_week_on_their_weekday_only(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    ben = add_subscriber(engine, "ben@example.com")
    for subscriber in (ana, ben):
        follow(engine, subscriber, "Radiohead")
    week = [DAY - timedelta(days=6 - offset) for offset in range(7)]  # Tuesday .. Monday
    before = DAY - timedelta(days=7)
    groups = {}
    for day in [before, *week]:
        groups[day] = release_group(f"Track of {day}", "Radiohead", released=day.isoformat())
        store_releases(engine, day, groups[day])
    change_preferences(engine, "ana@example.com", frequency=Frequency.WEEKLY, weekday="monday")

    for day in week[:-1]:
        assert _drops(engine, day) == {(ben, groups[day].mbid, "Radiohead")}
        assert _exclusions(engine, day) == {
            (ana, groups[day].mbid, mbid("artist:Radiohead"), "weekly_pending")
        }
    # Monday: Ana is owed the seven days up to it (not the Monday before), Ben only Monday's.
    assert _drops(engine, DAY) == {
        *((ana, groups[day].mbid, "Radiohead") for day in week),
        (ben, groups[DAY].mbid, "Radiohead"),
    }


def test_the_documented_exclusions_query_counts_reasons(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Björk")
    follow(engine, ana, "Sigur Rós")
    store_releases(
        engine,
        DAY,
        replace(release_group("Live", "Björk"), secondary_types=("Live",)),
        release_group("Guest", "Björk", "Sigur Rós", joins=(" & ",)),
    )
    change_preferences(
        engine,
        "ana@example.com",
        release_types=frozenset(ReleaseType) - {ReleaseType.LIVE},
        appearances=False,
    )
    _drops(engine)
    sql = doc_queries()["Why followed artists' release groups were not announced on a day"]
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql))]
    assert rows == [("appearance", 1, 1), ("type_filtered", 1, 1)]


def test_rerunning_the_day_rewrites_exclusions_with_the_drops(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Queen")
    live = replace(release_group("Live at Wembley", "Queen"), secondary_types=("Live",))
    store_releases(engine, DAY, live)
    change_preferences(engine, "ana@example.com", release_types=parse_release_types("album"))
    assert _drops(engine) == set()
    change_preferences(engine, "ana@example.com", release_types=parse_release_types("all"))
    assert _drops(engine) == {(ana, live.mbid, "Queen")}
    assert _exclusions(engine) == set()


def test_pruning_drops_prunes_their_exclusions(engine: Engine) -> None:
    ana = add_subscriber(engine, "ana@example.com")
    follow(engine, ana, "Queen")
    old, new = DAY - timedelta(days=100), DAY
    store_releases(engine, old, release_group("Old", "Queen", released=old.isoformat()))
    store_releases(engine, new, release_group("New", "Queen"))
    change_preferences(
        engine, "ana@example.com", appearances=True, frequency=Frequency.WEEKLY, weekday="friday"
    )
    _drops(engine, old)
    _drops(engine, new)
    assert len(_exclusions(engine, old)) == len(_exclusions(engine, new)) == 1
    prune_drops(engine, DAY - timedelta(days=90))
    assert _exclusions(engine, old) == set()
    assert len(_exclusions(engine, new)) == 1

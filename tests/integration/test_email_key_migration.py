"""Migration 0006_email_key on both dialects: case-variant duplicates in every table merged into one
subscriber per mailbox, without breaking a unique constraint or opting anybody back in."""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import Date, DateTime, Engine, Integer, String, column, func, insert, select, table

from musicbutler_pipeline.warehouse.health import release_groups_sent_twice
from musicbutler_pipeline.warehouse.migrate import alembic_config, current_revision, upgrade
from musicbutler_pipeline.warehouse.schema import (
    announcements,
    drops,
    library_artists,
    sends,
    subscriber_merges,
    subscribers,
)
from musicbutler_pipeline.warehouse.subscribers import subscriber_by_id, unsubscribe
from tests.builders import mbid

BEFORE = "0005"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)
D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
X, Y = mbid("artist:x"), mbid("artist:y")
RG_A, RG_B, RG_C, RG_D = (mbid(f"rg:{label}") for label in "ABCD")

# The subscribers table as it was at revision 0003, before email_key.
old_subscribers = table(
    "subscribers",
    column("id", Integer),
    column("email", String),
    column("name", String),
    column("listenbrainz_user", String),
    column("subscribed_at", DateTime(timezone=True)),
    column("unsubscribed_at", DateTime(timezone=True)),
    column("updated_at", DateTime(timezone=True)),
)
_ = Date  # partition dates below go through the real tables' Date columns


def _downgrade(engine: Engine) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, BEFORE)
    assert current_revision(engine) == BEFORE


def _subscriber(sid: int, email: str, **values: object) -> dict[str, object]:
    at = T0.replace(day=sid)
    return {
        "id": sid,
        "email": email,
        "name": None,
        "listenbrainz_user": None,
        "subscribed_at": at,
        "unsubscribed_at": None,
        "updated_at": at,
    } | values


def _send(sid: int, day: date, subscriber: int, state: str) -> dict[str, object]:
    return {
        "id": sid,
        "partition_date": day,
        "subscriber_id": subscriber,
        "state": state,
        "claim_token": f"token-{sid}",
        "run_id": "run",
        "host": "host",
        "pid": 1,
        "code_version": "test",
        "message_id": f"<{sid}@test>",
        "recipient": "someone@example.com",
        "release_group_count": 1,
        "attempts": 1,
        "claimed_at": T2,
        "sent_at": T2 if state == "sent" else None,
        "updated_at": T2,
        "error": "550 no" if state == "failed" else None,
        "permanent_failure": False,
    }


def _follow(fid: int, subscriber: int, artist: str, ended: date | None = None) -> dict[str, object]:
    return {
        "id": fid,
        "subscriber_id": subscriber,
        "artist_mbid": artist,
        "artist_name": artist[:8],
        "source": "csv",
        "followed_at": T0,
        "unfollowed_on": ended,
    }


def _announced(subscriber: int, group: str, day: date, *, send: int) -> dict[str, object]:
    return {
        "subscriber_id": subscriber,
        "release_group_mbid": group,
        "partition_date": day,
        "send_id": send,
    }


def _load_duplicates(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(old_subscribers),
            [
                _subscriber(1, "alice@example.com"),
                _subscriber(2, "Alice@example.com", name="Alice", listenbrainz_user="alice_lb"),
                _subscriber(3, "ALICE@example.com", unsubscribed_at=T1),
                _subscriber(4, "bob@example.com", name="Bob", unsubscribed_at=T2),
                _subscriber(5, "Bob@Example.com", name="Bobby"),
                _subscriber(6, "carol@example.com", name="Carol"),
            ],
        )
        connection.execute(
            insert(library_artists),
            [
                _follow(1, 1, X),
                _follow(2, 2, X),  # a second current follow of X for alice: goes
                _follow(3, 3, Y),
                _follow(4, 2, Y, ended=date(2026, 11, 5)),  # history: moves
                _follow(5, 6, X),
            ],
        )
        connection.execute(
            insert(sends),
            [
                _send(1, D1, 1, "failed"),
                _send(2, D1, 2, "sent"),  # alice's D1: the one that went out stays
                _send(3, D2, 1, "sent"),  # alice's D2: two went out, the older stays
                _send(4, D2, 3, "sent"),
                _send(5, D3, 3, "claimed"),
                _send(6, D1, 4, "failed"),
                _send(7, D1, 5, "claimed"),  # bob's D1: an unresolved claim beats a failure
                _send(8, D1, 6, "sent"),
            ],
        )
        connection.execute(
            insert(announcements).values(announced_at=T2),
            [
                _announced(2, RG_A, D1, send=2),
                _announced(1, RG_B, D2, send=3),
                _announced(3, RG_B, D2, send=4),  # B twice on one day: one stays
                _announced(3, RG_A, D2, send=4),  # A again a day later: the first stays
                _announced(3, RG_C, D2, send=4),
                _announced(6, RG_A, D1, send=8),
            ],
        )
        connection.execute(
            insert(drops).values(artist_mbid=X, artist_name="X"),
            [
                {"partition_date": D1, "subscriber_id": 1, "release_group_mbid": RG_A},
                {"partition_date": D1, "subscriber_id": 2, "release_group_mbid": RG_A},
                {"partition_date": D2, "subscriber_id": 1, "release_group_mbid": RG_B},
                {"partition_date": D2, "subscriber_id": 3, "release_group_mbid": RG_B},
                {"partition_date": D2, "subscriber_id": 3, "release_group_mbid": RG_A},
                {"partition_date": D2, "subscriber_id": 3, "release_group_mbid": RG_C},
                {"partition_date": D3, "subscriber_id": 3, "release_group_mbid": RG_D},
                {"partition_date": D1, "subscriber_id": 6, "release_group_mbid": RG_A},
            ],
        )


def test_duplicates_in_every_table_merge_into_one_subscriber(engine: Engine) -> None:
    _downgrade(engine)
    _load_duplicates(engine)
    upgrade(engine)

    with engine.connect() as connection:
        people = {
            row.id: row
            for row in connection.execute(select(subscribers).order_by(subscribers.c.id))
        }
        assert set(people) == {3, 5, 6}
        alice, bob, carol = people[3], people[5], people[6]
        # The first spelling and subscription, the newest non-empty name; unsubscribed because
        # one of the three was.
        assert (alice.email, alice.email_key) == ("alice@example.com", "alice@example.com")
        assert (alice.name, alice.listenbrainz_user) == ("Alice", "alice_lb")
        assert alice.unsubscribed_at is not None
        assert alice.subscribed_at.replace(tzinfo=UTC) == T0.replace(day=1)
        assert (bob.email, bob.email_key, bob.name) == (
            "bob@example.com",
            "bob@example.com",
            "Bobby",
        )
        assert bob.unsubscribed_at is not None
        assert (carol.email_key, carol.unsubscribed_at) == ("carol@example.com", None)

        assert dict(
            connection.execute(
                select(subscriber_merges.c.merged_id, subscriber_merges.c.survivor_id)
            ).all()
        ) == {1: 3, 2: 3, 4: 5}

        follows = connection.execute(
            select(
                library_artists.c.id,
                library_artists.c.subscriber_id,
                library_artists.c.artist_mbid,
                library_artists.c.unfollowed_on,
            ).order_by(library_artists.c.id)
        ).all()
        assert [tuple(row) for row in follows] == [
            (1, 3, X, None),
            (3, 3, Y, None),
            (4, 3, Y, date(2026, 11, 5)),
            (5, 6, X, None),
        ]

        ledger = connection.execute(
            select(
                sends.c.id, sends.c.partition_date, sends.c.subscriber_id, sends.c.state
            ).order_by(sends.c.id)
        ).all()
        assert [tuple(row) for row in ledger] == [
            (2, D1, 3, "sent"),
            (3, D2, 3, "sent"),
            (5, D3, 3, "claimed"),
            (7, D1, 5, "claimed"),
            (8, D1, 6, "sent"),
        ]

        announced = connection.execute(
            select(
                announcements.c.subscriber_id,
                announcements.c.release_group_mbid,
                announcements.c.partition_date,
                announcements.c.send_id,
            ).order_by(announcements.c.subscriber_id, announcements.c.release_group_mbid)
        ).all()
        assert sorted(tuple(row) for row in announced) == sorted(
            [
                (3, RG_A, D1, 2),  # the earliest announcement of A
                (3, RG_B, D2, 3),
                (3, RG_C, D2, 3),  # its send (4) went, it now points at the day's survivor
                (6, RG_A, D1, 8),
            ]
        )

        owed = connection.execute(
            select(drops.c.partition_date, drops.c.subscriber_id, drops.c.release_group_mbid)
        ).all()
        assert sorted(tuple(row) for row in owed) == sorted(
            [
                (D1, 3, RG_A),
                (D2, 3, RG_B),
                (D2, 3, RG_C),  # A on D2 went: announced on D1
                (D3, 3, RG_D),
                (D1, 6, RG_A),
            ]
        )
        assert release_groups_sent_twice(connection) == []
        assert connection.execute(select(func.count()).select_from(subscribers)).scalar_one() == 3

    # A link in an email sent before the merge still reaches the mailbox.
    with engine.begin() as connection:
        assert subscriber_by_id(connection, 4) == subscriber_by_id(connection, 5)
        found = subscriber_by_id(connection, 1)
        assert found is not None and found.id == 3
        carol_link = subscriber_by_id(connection, 6)
        assert carol_link is not None and carol_link.email == "carol@example.com"
        assert subscriber_by_id(connection, 99) is None
    with engine.begin() as connection:
        connection.execute(
            subscribers.update().where(subscribers.c.id == 3).values(unsubscribed_at=None)
        )
        assert unsubscribe(connection, 2) is True  # the old id of Alice@example.com
        assert (
            connection.execute(
                select(subscribers.c.unsubscribed_at).where(subscribers.c.id == 3)
            ).scalar_one()
            is not None
        )


def test_upgrade_without_duplicates_changes_no_row_and_goes_down_again(engine: Engine) -> None:
    _downgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(old_subscribers),
            [_subscriber(1, "Dora@example.com"), _subscriber(2, "eve@example.com")],
        )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            select(subscribers.c.id, subscribers.c.email, subscribers.c.email_key).order_by(
                subscribers.c.id
            )
        ).all()
        assert [tuple(row) for row in rows] == [
            (1, "Dora@example.com", "dora@example.com"),
            (2, "eve@example.com", "eve@example.com"),
        ]
        assert (
            connection.execute(select(func.count()).select_from(subscriber_merges)).scalar_one()
            == 0
        )
    _downgrade(engine)
    upgrade(engine)  # and up again, the keys recomputed
    with engine.connect() as connection:
        assert (
            connection.execute(
                select(subscribers.c.email_key).where(subscribers.c.id == 1)
            ).scalar_one()
            == "dora@example.com"
        )

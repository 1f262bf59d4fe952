"""iter_digests with a Shard: the shards of one count are disjoint and together the whole day, on
SQLite and PostgreSQL (the modulo is in the query), and each shard keeps subscriber-id order."""

from datetime import date

from sqlalchemy import Engine

from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.warehouse.digests import iter_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from tests.builders import add_subscriber, follow, release_group, store_releases

DAY = date(2026, 11, 23)


def test_the_shards_of_a_day_are_disjoint_and_cover_it(engine: Engine) -> None:
    subscriber_ids = [add_subscriber(engine, f"fan{n}@example.com") for n in range(11)]
    for subscriber_id in subscriber_ids:
        follow(engine, subscriber_id, "Abba")
    store_releases(engine, DAY, release_group("A1", "Abba"))
    with engine.begin() as connection:
        replace_drops(connection, DAY)
    whole_day = [d.subscriber.id for d in iter_digests(engine, DAY)]
    assert whole_day == sorted(subscriber_ids)

    shards = {
        shard.index: [d.subscriber.id for d in iter_digests(engine, DAY, batch_size=2, shard=shard)]
        for shard in Shard.all(3)
    }
    for index, ids in shards.items():
        assert ids == sorted(ids)
        assert all(subscriber_id % 3 == index for subscriber_id in ids)
    assert sorted(i for ids in shards.values() for i in ids) == whole_day
    # One shard of one is the whole day.
    assert [d.subscriber.id for d in iter_digests(engine, DAY, shard=Shard(0, 1))] == whole_day

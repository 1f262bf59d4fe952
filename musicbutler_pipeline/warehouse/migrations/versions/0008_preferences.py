"""subscriber preferences: release types, appearances, frequency; blocked artists; drop exclusions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:40:00.000000

New tables only, so existing rows and views are untouched. A subscriber without a
`subscriber_preferences` row has the defaults (every type, appearances on, daily), which is what
was announced before this revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIMESTAMP = sa.DateTime(timezone=True)
# Frozen copies as of this revision: a migration must not change meaning with the code.
_RELEASE_TYPES = ("album", "single", "ep", "compilation", "live", "remix", "other")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_REASONS = ("type_filtered", "appearance", "blocked", "already_announced", "weekly_pending")


def _subscriber_fk(table: str) -> sa.Column[int]:
    return sa.Column(
        "subscriber_id",
        _ID,
        sa.ForeignKey(
            "subscribers.id", ondelete="CASCADE", name=f"fk_{table}_subscriber_id_subscribers"
        ),
        nullable=False,
        autoincrement=False,
    )


def upgrade() -> None:
    op.create_table(
        "subscriber_preferences",
        _subscriber_fk("subscriber_preferences"),
        *(
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.text("true"))
            for name in _RELEASE_TYPES
        ),
        sa.Column("appearances", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("frequency", sa.String(8), nullable=False, server_default="daily"),
        sa.Column("weekday", sa.String(9)),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "frequency IN ('daily', 'weekly')", name="ck_subscriber_preferences_frequency"
        ),
        sa.CheckConstraint(
            f"(frequency = 'weekly' AND weekday IN {_WEEKDAYS!r}) "
            "OR (frequency = 'daily' AND weekday IS NULL)",
            name="ck_subscriber_preferences_weekday",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name="pk_subscriber_preferences"),
    )
    op.create_table(
        "blocked_artists",
        _subscriber_fk("blocked_artists"),
        sa.Column("artist_mbid", sa.String(36), nullable=False),
        sa.Column("blocked_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "artist_mbid", name="pk_blocked_artists"),
    )
    op.create_table(
        "drop_exclusions",
        sa.Column("partition_date", sa.Date(), nullable=False),
        _subscriber_fk("drop_exclusions"),
        sa.Column("release_group_mbid", sa.String(36), nullable=False),
        sa.Column("artist_mbid", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.CheckConstraint(f"reason IN {_REASONS!r}", name="ck_drop_exclusions_reason"),
        sa.PrimaryKeyConstraint(
            "partition_date",
            "subscriber_id",
            "release_group_mbid",
            "artist_mbid",
            name="pk_drop_exclusions",
        ),
    )
    op.create_index("ix_drop_exclusions_subscriber_id", "drop_exclusions", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_drop_exclusions_subscriber_id", table_name="drop_exclusions")
    op.drop_table("drop_exclusions")
    op.drop_table("blocked_artists")
    op.drop_table("subscriber_preferences")

"""feed_tokens: each subscriber's secret for their Atom and iCalendar feed URLs

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01 21:30:00.000000

One row per subscriber who has feeds, made on first use (a digest's footer or `musicbutler
feeds EMAIL`) and replaced by `musicbutler feeds EMAIL --rotate`. The downgrade drops the table:
every feed URL given out then stops working.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feed_tokens",
        sa.Column("subscriber_id", _ID, autoincrement=False, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_feed_tokens_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_feed_tokens")),
        sa.UniqueConstraint("token", name=op.f("uq_feed_tokens_token")),
    )


def downgrade() -> None:
    op.drop_table("feed_tokens")

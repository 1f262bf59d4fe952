"""release_group_links: listen links (streaming and store URLs) per release group

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "release_group_links",
        sa.Column("release_group_mbid", sa.String(length=36), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("partition_date", sa.Date(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "release_group_mbid", "service", name=op.f("pk_release_group_links")
        ),
    )
    with op.batch_alter_table("release_group_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_release_group_links_partition_date", ["partition_date"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("release_group_links", schema=None) as batch_op:
        batch_op.drop_index("ix_release_group_links_partition_date")
    op.drop_table("release_group_links")

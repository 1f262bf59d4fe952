"""subscriber_preferences.broadcast: the release type for primary types Broadcast and Other

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:15:00.000000

False for every existing row and by default: broadcasts were never fetched nor announced before
this revision, so nobody's digest changes until they select the type. (A subscriber without a
row has the defaults, which leave broadcasts out too.)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both dialects: NOT NULL is allowed because of the server default.
    op.add_column(
        "subscriber_preferences",
        sa.Column("broadcast", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )


def downgrade() -> None:
    with op.batch_alter_table("subscriber_preferences") as batch_op:
        batch_op.drop_column("broadcast")

"""library statistics without scanning every follow: an index of ended follows by subscriber

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 21:30:00.000000

`library_summary` (the `user_libraries` asset) counts the subscribers who follow anything on a day:
a current follow (found through `uq_library_artists_current`) or one that ended after the day
(found through this partial index, which holds only ended follows, so it stays small and costs a
CSV import nothing: imported follows are current).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_library_artists_ended",
        "library_artists",
        ["subscriber_id", "unfollowed_on"],
        sqlite_where=sa.text("unfollowed_on IS NOT NULL"),
        postgresql_where=sa.text("unfollowed_on IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_library_artists_ended", table_name="library_artists")

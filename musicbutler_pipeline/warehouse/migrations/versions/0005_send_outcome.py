"""send ledger: the 'unknown' state and the SMTP phase reached

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ("claimed", "sent", "failed")
NEW_STATES = ("claimed", "sent", "failed", "unknown")


def upgrade() -> None:
    with _keeping_announcements(), op.batch_alter_table("sends") as batch:
        batch.add_column(
            sa.Column("phase", sa.String(length=16), nullable=False, server_default="claimed")
        )
        batch.drop_constraint("state", type_="check")
        batch.create_check_constraint("state", f"state IN {NEW_STATES!r}")
    # What is known about the rows written before phases were recorded.
    op.execute("UPDATE sends SET phase = 'accepted' WHERE state = 'sent'")


def downgrade() -> None:
    # An 'unknown' row is an undecided send: keep it unsendable as a stale claim would be.
    op.execute("UPDATE sends SET state = 'claimed' WHERE state = 'unknown'")
    with _keeping_announcements(), op.batch_alter_table("sends") as batch:
        batch.drop_constraint("state", type_="check")
        batch.create_check_constraint("state", f"state IN {OLD_STATES!r}")
        batch.drop_column("phase")


@contextmanager
def _keeping_announcements() -> Iterator[None]:
    """SQLite cannot alter a CHECK constraint, so batch mode copies ``sends`` and drops the old
    table; with foreign keys on (the engine turns them on, and the pragma cannot change inside
    the migration's transaction) that DROP cascades to ``announcements``. Keep a copy and put
    it back: send ids survive the copy, so every row points at its send again."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMP TABLE announcements_kept AS SELECT * FROM announcements")
    yield
    op.execute(
        "INSERT INTO announcements SELECT * FROM announcements_kept "
        "WHERE NOT EXISTS (SELECT 1 FROM announcements AS a "
        "WHERE a.subscriber_id = announcements_kept.subscriber_id "
        "AND a.release_group_mbid = announcements_kept.release_group_mbid)"
    )
    op.execute("DROP TABLE announcements_kept")

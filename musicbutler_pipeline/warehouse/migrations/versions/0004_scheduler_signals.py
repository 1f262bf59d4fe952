"""scheduler process start times and scheduler signals

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "scheduler_presence", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "scheduler_signals",
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signal", "subject", name=op.f("pk_scheduler_signals")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_signals")
    with op.batch_alter_table("scheduler_presence") as batch:
        batch.drop_column("started_at")

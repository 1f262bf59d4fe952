"""scheduler presence and operator alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduler_presence",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("daemon_pid", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("host", "daemon_pid", name=op.f("pk_scheduler_presence")),
    )
    op.create_table(
        "operator_alerts",
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "period_start", name=op.f("pk_operator_alerts")),
    )


def downgrade() -> None:
    op.drop_table("operator_alerts")
    op.drop_table("scheduler_presence")

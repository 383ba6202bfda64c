"""Quality: findings of `audit --quality`, and repeated timestamps dropped at download.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quality_flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checked_at", sa.String, nullable=False),
        sa.Column("dataset", sa.String, nullable=False),
        sa.Column("ticker", sa.String, nullable=False),
        sa.Column("session_date", sa.String),  # ISO date, US/Eastern; NULL when not one session
        sa.Column("check_name", sa.String, nullable=False),
        sa.Column("detail", sa.String, nullable=False),
        sa.Column("value", sa.Float),  # the measured figure (a ratio, a count, a price), if any
        sa.Column("unit_id", sa.Integer),
    )
    op.create_index("ix_quality_flags_check", "quality_flags", ["check_name", "ticker"])
    # bars that arrived twice with one timestamp (the first is kept): the download itself
    # saw a duplicate that the stored file no longer shows
    op.add_column("unit_attempts", sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("unit_attempts", "duplicates")
    op.drop_index("ix_quality_flags_check", "quality_flags")
    op.drop_table("quality_flags")

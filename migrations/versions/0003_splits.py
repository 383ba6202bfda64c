"""Splits known for each ticker, copied from the splits dataset as its units settle.

The stale-adjustment audit compares them with when adjusted bar units were fetched: a
unit fetched before a split that took effect later holds prices on the old basis.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "splits",
        sa.Column("ticker", sa.String, primary_key=True),
        sa.Column("execution_date", sa.String, primary_key=True),  # ISO date
        sa.Column("split_from", sa.Float, nullable=False),
        sa.Column("split_to", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("splits")

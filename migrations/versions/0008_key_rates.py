"""Runs sharing an API key share what they learn about its rate limit: the limit a run
measured (`key_rates`, so a run starting later starts there) and the runs on the key now
with the grid of request slots they share (`key_members`). The key itself is never
stored: rows are keyed by a one-way digest of the API and the key.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_rates",
        sa.Column("key_id", sa.String, primary_key=True),
        sa.Column("limit_rps", sa.Float, nullable=False),
        sa.Column("learned_at", sa.Float, nullable=False),
        sa.Column("learned_by", sa.String, nullable=False),
    )
    op.create_table(
        "key_members",
        sa.Column("member", sa.String, primary_key=True),
        sa.Column("key_id", sa.String, nullable=False),
        sa.Column("joined_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("anchor", sa.Float, nullable=False),
        sa.Column("known", sa.Float, nullable=True),
        sa.Column("throttled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ok", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_key_members_key_id", "key_members", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_key_members_key_id", table_name="key_members")
    op.drop_table("key_members")
    op.drop_table("key_rates")

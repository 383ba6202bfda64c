"""Initial ledger: units, unit_attempts, settings, runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset", sa.String, nullable=False),
        sa.Column("ticker", sa.String, nullable=False),
        sa.Column("period", sa.String, nullable=False),  # calendar month "2024-03" or year "2024"
        sa.Column("period_start", sa.String, nullable=False),
        sa.Column("period_end", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False, server_default="pending"),
        sa.Column("rows", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String),
        sa.Column("error_class", sa.String),
        sa.Column("adjusted", sa.Boolean),
        sa.Column("fetched_at", sa.String),
        sa.Column("file_path", sa.String),
        sa.Column("checksum", sa.String),
        sa.Column("bytes", sa.Integer),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String),
        sa.Column("lease_token", sa.String),
        sa.Column("lease_expires_at", sa.String),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("updated_at", sa.String, nullable=False),
        sa.UniqueConstraint("dataset", "ticker", "period", name="uq_units_dataset_ticker_period"),
    )
    # claims take pending units, least-tried first, in id order: without this index a
    # claim costs a table scan
    op.create_index("ix_units_state_attempts_id", "units", ["state", "attempts", "id"])
    op.create_table(
        "unit_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("unit_id", sa.Integer, sa.ForeignKey("units.id"), nullable=False),
        sa.Column("run_id", sa.String),
        sa.Column("started_at", sa.String, nullable=False),
        sa.Column("ended_at", sa.String, nullable=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("error_class", sa.String),
        sa.Column("error", sa.String),
        sa.Column("http_status", sa.Integer),
        sa.Column("request_id", sa.String),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bars", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_unit_attempts_unit_id", "unit_attempts", ["unit_id"])
    # ledger-wide choices, e.g. whether its bars are split-adjusted (one ledger never mixes)
    op.create_table(
        "settings",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.String, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("started_at", sa.String, nullable=False),
        sa.Column("ended_at", sa.String),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("adjusted", sa.Boolean, nullable=False),
        sa.Column("base_url", sa.String, nullable=False),
        sa.Column("outcome", sa.String),
        sa.Column("units_settled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("settings")
    op.drop_index("ix_unit_attempts_unit_id", "unit_attempts")
    op.drop_table("unit_attempts")
    op.drop_index("ix_units_state_attempts_id", "units")
    op.drop_table("units")

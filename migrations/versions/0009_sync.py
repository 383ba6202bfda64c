"""What `polyledger sync` needs: what was planned (`planned`: a row per dataset and
universe source, with its first date and the end it was given), how each universe was
built (`universe_builds`: its filters and output file), and one lock row per job
(`sync_lock`: who holds it, since when, its last heartbeat) so two syncs never overlap,
across hosts on PostgreSQL.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "planned",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String, nullable=False),
        sa.Column("universe", sa.String, nullable=False),  # absolute path; '' when none (grouped_daily)
        sa.Column("first_day", sa.String, nullable=True),  # ISO date; NULL for per-ticker datasets
        sa.Column("last_day", sa.String, nullable=True),  # the --to given last; NULL: through yesterday
        sa.Column("planned_at", sa.String, nullable=False),
        sa.UniqueConstraint("dataset", "universe", name="uq_planned_dataset_universe"),
    )
    op.create_table(
        "universe_builds",
        sa.Column("out", sa.String, primary_key=True),  # absolute path of the CSV
        sa.Column("types", sa.String, nullable=False),  # comma-separated, as filtered
        sa.Column("exchanges", sa.String, nullable=False),
        sa.Column("cap_max", sa.Float, nullable=True),
        sa.Column("as_of", sa.String, nullable=True),  # the --date given; NULL: the build day
        sa.Column("built_at", sa.String, nullable=False),
    )
    op.create_table(
        "sync_lock",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("token", sa.String, nullable=False),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("since", sa.String, nullable=False),  # ISO UTC, the ledger's clock
        sa.Column("beat_at", sa.String, nullable=False),  # last heartbeat, the ledger's clock
    )


def downgrade() -> None:
    op.drop_table("sync_lock")
    op.drop_table("universe_builds")
    op.drop_table("planned")

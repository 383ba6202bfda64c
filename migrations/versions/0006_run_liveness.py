"""Runs that die stay true: who held the leases (`owner`), when the run was last seen
alive (`last_seen_at`, renewed with its heartbeat together with its counters), so a run
killed with -9 is closed as `lost` when its leases are reclaimed instead of staying open
with zero counters.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String, nullable=True))
        batch.add_column(sa.Column("last_seen_at", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("owner")

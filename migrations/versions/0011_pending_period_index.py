"""Index pending units by period too, for claims limited to a window of periods.

The flat-file route claims a calendar year's units at a time (`RunOptions.window`). Walked
in the pending index's (attempts, id) order, such a claim tested every pending unit of the
other years before the window's next one (a plan is ticker-major: the later years of every
ticker already built sit before it), each claim holding SQLite's write lock meanwhile. In
(attempts, period_start, id) order the earlier years' pending units are few (settled
before the window's), and the walk stops at the window's first one.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_units_pending_period",
        "units",
        ["attempts", "period_start", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_units_pending_period", "units")

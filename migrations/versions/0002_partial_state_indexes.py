"""Index only the states that are looked up: pending (claims) and running (leases).

A unit moves pending -> running -> done. With one index on (state, attempts, id) every
claim and every settle rewrote two of its pages (the row leaves one state's range for
another's), and done units, almost all of a ledger, were indexed for no query. Partial
indexes hold only the rows that claims and lease checks read; counts over all states
scan the table, which takes well under a second for a million units.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")
RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    op.drop_index("ix_units_state_attempts_id", "units")
    op.create_index(
        "ix_units_pending", "units", ["attempts", "id"], sqlite_where=PENDING, postgresql_where=PENDING
    )
    op.create_index(
        "ix_units_running", "units", ["lease_expires_at"], sqlite_where=RUNNING, postgresql_where=RUNNING
    )


def downgrade() -> None:
    op.drop_index("ix_units_running", "units")
    op.drop_index("ix_units_pending", "units")
    op.create_index("ix_units_state_attempts_id", "units", ["state", "attempts", "id"])

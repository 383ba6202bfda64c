"""Index failed units (few, and read by every audit and retry) so finding them is not a
scan of the whole ledger.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FAILED = sa.text("state = 'failed'")


def upgrade() -> None:
    op.create_index(
        "ix_units_failed", "units", ["dataset", "error_class"], sqlite_where=FAILED, postgresql_where=FAILED
    )


def downgrade() -> None:
    op.drop_index("ix_units_failed", "units")

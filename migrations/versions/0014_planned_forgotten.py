"""`planned.forgotten`: `sync --forget D` stops syncing D by marking its rows instead of
deleting them, so `audit` still judges the holes between D's units over the range D was
planned for (a deleted row took D out of that judgement: a hole `audit` had reported
vanished, exit 0). A later `plan` of D clears the mark: sync plans it again.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("planned", sa.Column("forgotten", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("planned") as batch:
        batch.drop_column("forgotten")

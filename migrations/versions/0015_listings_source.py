"""`listings.source`: the universe file a plan recorded a symbol's listings from (null:
recorded before this column, or without a file). A plan of another file that changes
them says so by name: two universe files that disagree about a listing queue each other's
months again on every plan, and the bars' security_id flips with them.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("listings", sa.Column("source", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("listings") as batch:
        batch.drop_column("source")

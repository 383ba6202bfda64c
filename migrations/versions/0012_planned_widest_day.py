"""`planned.widest_day`: the latest `--to` ever given for a dataset and universe (NULL once
one was given none: through yesterday), beside `last_day`, the last one given, which
`sync` plans through. `audit` judges holes between a ticker's units over the earliest
`--from` to the widest `--to`: a narrower or an earlier plan made since (a re-check of
January, a backfill) does not shrink the range its units show was planned.

Rows recorded before this revision: their widest `--to` is taken to be the last one.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("planned", sa.Column("widest_day", sa.String, nullable=True))
    op.execute("UPDATE planned SET widest_day = last_day")


def downgrade() -> None:
    with op.batch_alter_table("planned") as batch:
        batch.drop_column("widest_day")

"""`unwidened`: a row per clipped unit a plan asked to widen while a run held it (`plan`'s
`busy`: "plan again after the run"): its `unit_id` and the days the plan asked of it
(`first_day`..`last_day`). The run settles the range it was given; until a later plan
widens the unit, the days asked and in no unit are `audit`'s `unplanned`, not COMPLETE.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unwidened",
        sa.Column("unit_id", sa.Integer, sa.ForeignKey("units.id"), primary_key=True),
        sa.Column("first_day", sa.String, nullable=False),  # ISO dates: the range the plan asked of it
        sa.Column("last_day", sa.String, nullable=False),
        sa.Column("planned_at", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unwidened")

"""Flat files: every unit records its source (`rest` or `flatfiles`), and each day file
read is recorded (`flat_files`: object key, ETag, size, rows, the universe it was staged
for, and the ETag last seen in the bucket), so a replaced file makes its ticker-months
stale.

Units settled before this revision were fetched from the REST API: their source is `rest`.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (no table copy: the units table's partial indexes stay as they are)
    op.add_column("units", sa.Column("source", sa.String, nullable=True))
    op.execute("UPDATE units SET source = 'rest' WHERE state IN ('done', 'empty_confirmed')")
    op.create_table(
        "flat_files",
        sa.Column("unit_id", sa.Integer, sa.ForeignKey("units.id"), primary_key=True),
        sa.Column("object_key", sa.String, nullable=False),
        sa.Column("etag", sa.String, nullable=False),  # as read
        sa.Column("size", sa.Integer, nullable=False),  # bytes of the gzip object
        sa.Column("rows", sa.Integer, nullable=False),  # rows of the whole day file
        sa.Column("universe", sa.String, nullable=False),  # hash of the tickers it was staged for
        sa.Column("seen_etag", sa.String, nullable=True),  # last seen in the bucket (audit --etags)
        sa.Column("read_at", sa.String, nullable=False),
        # when a read found another ETag than the previous read: ticker-months built before are stale
        sa.Column("changed_at", sa.String, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("flat_files")
    with op.batch_alter_table("units") as batch:
        batch.drop_column("source")

"""Listings, not symbols: a symbol over a window of session dates and the security it
belongs to (`security_id`, stable across renames), and the bars of a unit that fall inside
no known listing of their symbol (`unattributed_bars`, what `audit` reports).

A ledger made before listings existed gets one unbounded listing per ticker of its bar
units, with polyledger's derived id (`PL:<ticker>`) and link `derived`: the bars already
on disk belong to it (their files have no `security_id` column; readers add it).

Revision ID: 0007
Revises: 0006
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticker", sa.String, nullable=False),
        sa.Column("first_day", sa.String, nullable=True),  # ISO session date; NULL: unbounded
        sa.Column("last_day", sa.String, nullable=True),
        sa.Column("security_id", sa.String, nullable=False),
        sa.Column("link", sa.String, nullable=False),  # how security_id was made
        sa.Column("name", sa.String, nullable=True),
        sa.Column("cik", sa.String, nullable=True),
        sa.Column("composite_figi", sa.String, nullable=True),
        sa.Column("share_class_figi", sa.String, nullable=True),
        sa.Column("recorded_at", sa.String, nullable=False),
    )
    op.create_index("ix_listings_ticker", "listings", ["ticker"])
    op.create_index("ix_listings_security_id", "listings", ["security_id"])
    op.create_table(
        "unattributed_bars",
        sa.Column("unit_id", sa.Integer, sa.ForeignKey("units.id"), primary_key=True),
        sa.Column("ticker", sa.String, nullable=False),
        sa.Column("first_day", sa.String, nullable=False),
        sa.Column("last_day", sa.String, nullable=False),
        sa.Column("bars", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.String, nullable=False),
    )
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    # bar files fetched before now have no security_id column: readers add it from listings
    # (a ledger without units has no such file: a new ledger stays empty)
    op.execute(
        sa.text(
            "INSERT INTO settings (key, value) SELECT 'security_id_since', :now "
            "WHERE EXISTS (SELECT 1 FROM units)"
        ).bindparams(now=now)
    )
    op.execute(
        sa.text(
            "INSERT INTO listings (ticker, first_day, last_day, security_id, link, recorded_at) "
            "SELECT DISTINCT ticker, NULL, NULL, 'PL:' || ticker, 'derived', :now FROM units "
            "WHERE dataset IN ('minute', 'day')"
        ).bindparams(now=now)
    )


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key = 'security_id_since'")
    op.drop_table("unattributed_bars")
    op.drop_index("ix_listings_security_id", "listings")
    op.drop_index("ix_listings_ticker", "listings")
    op.drop_table("listings")

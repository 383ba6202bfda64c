"""The ledger: planning units, claiming them under a lease, settling them, and reading it back.

Hot paths are single SQL statements (never ORM objects): a claim is one UPDATE over a
LIMIT-ed subquery that RETURNs the claimed rows, so two workers can never get the same
unit, and a settle only lands while the worker still holds the lease.

Writes go straight to one sqlite3 connection per thread: through SQLAlchemy `text()`,
compiling and pooling cost three times the SQL itself (claim + complete at ~1,100
units/s with 8 threads; ~5,000 raw). Reads and migrations go through the engine.

On PostgreSQL (a `postgresql://` location) the same SQL runs on one psycopg connection per
thread (`polyledger.ledger.pg` converts its parameters), and a claim's subquery locks the
rows it picks with FOR UPDATE SKIP LOCKED: many hosts x many workers never wait on each
other's claims nor get the same unit.
"""

from __future__ import annotations

from polyledger.ledger.connection import RECONNECT_DELAYS
from polyledger.ledger.flat_file_table import FlatFileTable
from polyledger.ledger.key_table import KeyTable
from polyledger.ledger.listing_table import ListingTable
from polyledger.ledger.liveness import Liveness
from polyledger.ledger.planning import Planning
from polyledger.ledger.reads import Reads
from polyledger.ledger.records import (
    AttemptRecord,
    ClaimedUnit,
    FetchedUnit,
    PlannedUnit,
    StoredFile,
    in_list,
    iso,
    new_owner_id,
    utc_now,
)
from polyledger.ledger.resets import Resets
from polyledger.ledger.runs import Runs
from polyledger.ledger.settle import Settling
from polyledger.ledger.splits_and_flags import SplitsAndFlags
from polyledger.ledger.sync_memory import SyncMemory

__all__ = [
    "RECONNECT_DELAYS",
    "AttemptRecord",
    "ClaimedUnit",
    "FetchedUnit",
    "Ledger",
    "PlannedUnit",
    "StoredFile",
    "in_list",
    "iso",
    "new_owner_id",
    "utc_now",
]


class Ledger(
    Planning,
    Liveness,
    Settling,
    Resets,
    Runs,
    SplitsAndFlags,
    ListingTable,
    SyncMemory,
    KeyTable,
    FlatFileTable,
    Reads,
):
    """A ledger: a SQLite file or a PostgreSQL database (`postgresql://user:pw@host/db`).
    Thread-safe: every thread has its own connection.

    Each part is its own module: `connection` (connections, write transactions, reconnects),
    `moves` (every state change), `planning`, `claims` (leases and reclaims), `liveness`
    (runs that stopped beating), `settle`, `resets` (units queued again), `runs` (and
    settings), `splits_and_flags`, `listing_table`, `sync_memory` (what `sync` repeats, its lock), `reads`."""

"""The ledger (a SQLite file or a PostgreSQL database): every unit of work, its state, and its history."""

from polyledger.ledger.ledger import (
    AttemptRecord,
    ClaimedUnit,
    FetchedUnit,
    Ledger,
    PlannedUnit,
    StoredFile,
    in_list,
    iso,
    new_owner_id,
    utc_now,
)
from polyledger.ledger.models import QualityFlag, Run, Setting, Split, Unit, UnitAttempt
from polyledger.ledger.states import SETTLED, TRANSITIONS, UnitState, check_transition

__all__ = [
    "AttemptRecord",
    "ClaimedUnit",
    "FetchedUnit",
    "Ledger",
    "PlannedUnit",
    "QualityFlag",
    "Run",
    "Setting",
    "Split",
    "SETTLED",
    "StoredFile",
    "TRANSITIONS",
    "Unit",
    "UnitAttempt",
    "UnitState",
    "check_transition",
    "in_list",
    "iso",
    "new_owner_id",
    "utc_now",
]

"""Do the files on disk and the ledger agree? (`audit --deep`, `repair`)

The ledger is the record: a `done` unit must have its file with the recorded row count
and checksum. Parquet files the ledger does not know, whatever their name (a
`part (1).parquet` copy beside a month's file is read by `data/minute/**/*.parquet` too),
are reported, never moved or deleted; a damaged file is moved to `.quarantine/` right
after its unit left `done`: a `done` unit never lacks its file, and the damaged bytes
are kept (unless `repair` stops between the two: the unit's next fetch replaces them).

`repair` acts on what the check found only while it still holds: a run may start after its
"no run holds units" check, and fetch, hold or queue again a unit between the check and the
action. So each batch's units are first taken under repair's own lease, each only if it is
still as the check read it (`Ledger.hold_unchanged`: same state, attempts, file, checksum,
last change), in one transaction; only their files move, then they are given back (damaged:
pending; withdrawn: empty_confirmed again). A unit not taken is left alone (`skipped`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from polyledger.errors import InputError, StorageError, one_line
from polyledger.ledger import Ledger, UnitState, new_owner_id, queries
from polyledger.ledger.records import SeenUnit
from polyledger.storage import MARKER, TEMP_MARK, BarStore, unit_relative_path
from polyledger.storage.layout import quarantine_stamp

# kinds that mean a done unit is not what the ledger says: repair queues it again
UNIT_PROBLEMS = ("missing_file", "unreadable_file", "row_mismatch", "checksum_mismatch")
# units `repair` takes per transaction (damaged or withdrawn), each batch before its files move
REPAIR_BATCH = 500
# repair's lease on the units it holds while their files move: it is in no runs table, so
# only this lease's expiry gives them back if it dies (renewed while it works)
REPAIR_LEASE_SECONDS = 600.0
REPAIR_RENEW_SECONDS = 60.0


@dataclass(frozen=True)
class Finding:
    kind: str  # one of UNIT_PROBLEMS, or extra_file, stray_temporary, stale_file, withdrawn_file
    path: str  # relative to the data folder
    detail: str = ""
    unit_id: int | None = None
    # the unit as the check read it (unit problems, withdrawn files): `repair` acts on the
    # finding only while the unit is still so; not part of the report
    seen: SeenUnit | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The finding as `audit --deep --json` reports it."""
        return {"kind": self.kind, "path": self.path, "detail": self.detail, "unit_id": self.unit_id}


def _seen(row) -> SeenUnit:  # type: ignore[no-untyped-def]
    return SeenUnit(
        id=row.id,
        state=row.state,
        attempts=row.attempts,
        updated_at=str(row.updated_at),
        file_path=row.file_path,
        checksum=row.checksum,
    )


def _listed_files(ledger: Ledger) -> int:
    """How many files the ledger says exist (one per done unit with bars)."""
    return queries.listed_files(ledger)


def deep_check(ledger: Ledger, store: BarStore, checksums: bool = True) -> list[Finding]:
    """Compare every `done` unit with its file, and every file with the ledger."""
    if not store.present():
        files = _listed_files(ledger)
        if files:  # a typo in --data must not make every file look missing (repair would re-queue all)
            raise InputError(
                f"data folder {store.location} does not exist, yet the ledger lists {files} files in it"
            )
    findings: list[Finding] = []
    known: dict[str, Any] = {}  # relative path -> the unit (its row) that owns it
    for row in queries.unit_files(ledger):
        owned = row.file_path or _expected_path(row.dataset, row.ticker, row.period_start)
        if owned:
            known[owned] = row
        if row.state == UnitState.DONE.value and row.file_path:
            findings.extend(_check_unit_file(store, row, checksums))
    # the root's own files too: a `data/old.parquet` is read by `data/**/*.parquet`, and a
    # killed marker write leaves its temporary there (the marker itself is no finding)
    at_root = (name for name in store.root_files() if name != MARKER)
    for relative in itertools.chain(store.walk(), at_root):
        name = relative.rsplit("/", 1)[-1]  # walk() skips .quarantine/ (a dot folder)
        if name.startswith(TEMP_MARK):
            findings.append(Finding("stray_temporary", relative, "left by an interrupted write"))
        elif relative not in known:
            if _is_parquet(name):  # any name: a `**/*.parquet` read of the folder takes it
                findings.append(
                    Finding(
                        "extra_file",
                        relative,
                        "no unit in the ledger owns this file: a read of the folder takes its bars too",
                    )
                )
        elif known[relative].state == UnitState.EMPTY_CONFIRMED.value:
            # the API answered no bars since this file was written: nothing fetches it again,
            # and folder reads (`data/minute/**`) would return the withdrawn bars
            owner = known[relative]
            findings.append(
                Finding(
                    "withdrawn_file",
                    relative,
                    "its unit has no bars now (empty_confirmed): `repair` moves it to .quarantine/",
                    owner.id,
                    _seen(owner),
                )
            )
        elif known[relative].state != UnitState.DONE.value:
            findings.append(
                Finding(
                    "stale_file",
                    relative,
                    f"its unit is {known[relative].state}: replaced when it is fetched",
                )
            )
    return findings


def _is_parquet(name: str) -> bool:
    """A Parquet file by its name, in any case (`*.parquet` matches `PART.PARQUET` where
    names are case-insensitive: Windows, macOS); anything else (a note, `.DS_Store`) is no
    reader's business."""
    return name.lower().endswith(".parquet")


def _expected_path(dataset: str, ticker: str, period_start: str) -> str | None:
    """Where a unit not yet done would write its file (a file written just before a crash
    or a failed batch settle is its, not a stranger's)."""
    try:
        return unit_relative_path(dataset, ticker, dt.date.fromisoformat(period_start))
    except (InputError, ValueError):
        return None


def _check_unit_file(store: BarStore, row, checksums: bool) -> list[Finding]:  # type: ignore[no-untyped-def]
    def problem(kind: str, detail: str) -> list[Finding]:
        return [Finding(kind, row.file_path, detail, row.id, _seen(row))]

    if not store.exists(row.file_path):
        return problem("missing_file", "the unit is done but its file is gone")
    try:
        rows, checksum = store.rows_and_checksum(row.file_path, checksum=bool(checksums and row.checksum))
    except StorageError:  # the bytes could not be read: nothing is known of the file, and
        raise  # the check stops (one line) rather than call a good file damaged
    except Exception as exc:  # any parse failure means the file is damaged
        return problem("unreadable_file", one_line(exc, 200, with_type=True))
    if rows != row.rows:
        return problem("row_mismatch", f"ledger says {row.rows} rows, file has {rows}")
    if checksum is not None and checksum != row.checksum:
        return problem("checksum_mismatch", "file content differs from what was written")
    return []


@dataclass(frozen=True)
class RepairResult:
    requeued: int
    quarantined: list[str]
    temporaries_removed: int
    # findings left alone: their unit changed since the check (a run fetched, holds or
    # queued it again), or repair's hold on it lapsed before its file moved
    skipped: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def repair(
    ledger: Ledger, store: BarStore, findings: list[Finding], *, all_missing_is_fine: bool = False
) -> RepairResult:
    """Queue again every done unit whose file is missing or damaged (damaged files are then
    moved to `.quarantine/`, batch by batch), move files of units that have no bars now
    there too, and remove stray temporaries. Extra files (any `*.parquet` no unit owns) are left where they
    are, reported: whose they are (a copy, another tool's output) is the user's to say.
    When every file the ledger lists is missing, the location is almost surely the wrong
    one: refused unless `all_missing_is_fine` (else a typo re-queues the whole download).

    Acts only on units still as `deep_check` found them, held under repair's own lease
    while their files move (`_act_on_batch`); the others are counted `skipped`."""
    missing = sum(f.kind == "missing_file" for f in findings)
    if missing and not all_missing_is_fine:
        files = _listed_files(ledger)
        if missing == files:
            raise InputError(
                f"every one of the {files} files the ledger lists is missing from {store.location}: "
                "wrong --data? (repair --yes queues them all to be downloaded again)"
            )
    stamp = quarantine_stamp()
    owner = f"repair:{new_owner_id()}"
    quarantined: list[str] = []
    requeued = skipped = 0
    damaged = [f for f in findings if f.kind in UNIT_PROBLEMS and f.seen is not None]
    # bars the API no longer answers: kept aside, never deleted
    withdrawn = [f for f in findings if f.kind == "withdrawn_file" and f.seen is not None]
    for chosen, back_to in ((damaged, UnitState.PENDING), (withdrawn, UnitState.EMPTY_CONFIRMED)):
        for start in range(0, len(chosen), REPAIR_BATCH):
            batch = chosen[start : start + REPAIR_BATCH]
            moved, released, left_alone = _act_on_batch(ledger, store, batch, owner, stamp, back_to)
            quarantined.extend(moved)
            skipped += left_alone
            if back_to is UnitState.PENDING:
                requeued += released
    removed = sum(1 for f in findings if f.kind == "stray_temporary" and store.remove(f.path))
    return RepairResult(
        requeued=requeued, quarantined=quarantined, temporaries_removed=removed, skipped=skipped
    )


def _act_on_batch(
    ledger: Ledger,
    store: BarStore,
    batch: Sequence[Finding],
    owner: str,
    stamp: str,
    back_to: UnitState,
) -> tuple[list[str], int, int]:
    """Take the batch's units that are still as they were seen (out of `done` or
    `empty_confirmed` into `running` under repair's lease, in one transaction: no run can
    claim one meanwhile, and a `done` unit never lacks its file), move the files of those
    still held to `.quarantine/`, then give them back to `back_to` (pending: fetched again;
    empty_confirmed: as they were), also when a move fails. Returns (the files' new
    paths, units given back, findings left alone)."""
    token = uuid.uuid4().hex
    seen = [f.seen for f in batch if f.seen is not None]
    held = set(ledger.hold_unchanged(seen, owner, token, REPAIR_LEASE_SECONDS))
    moved: list[str] = []
    left_alone = len(batch) - len(held)
    renewed = time.monotonic()
    try:
        for finding in batch:
            if finding.unit_id not in held:
                continue  # changed since the check: a run's now
            if time.monotonic() - renewed > REPAIR_RENEW_SECONDS:
                ledger.heartbeat(owner, REPAIR_LEASE_SECONDS)
                renewed = time.monotonic()
            if not ledger.holds_unit(finding.unit_id, token):
                left_alone += 1  # the lease lapsed (a stall) and the unit was taken back
                continue
            if store.exists(finding.path):  # an object store: copied, checked, then deleted
                moved.append(store.quarantine(finding.path, stamp))
    finally:
        released = ledger.release_held(sorted(held), token, back_to)
    return moved, released, left_alone

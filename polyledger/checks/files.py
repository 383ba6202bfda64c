"""Do the files on disk and the ledger agree? (`audit --deep`, `repair`)

The ledger is the record: a `done` unit must have its file with the recorded row count
and checksum. Parquet files the ledger does not know, whatever their name (a
`part (1).parquet` copy beside a month's file is read by `data/minute/**/*.parquet` too),
are reported, never moved or deleted; a damaged file is moved to `.quarantine/` right
after its unit is queued again: a `done` unit never lacks its file, and the damaged bytes
are kept (unless `repair` stops between the two: the unit's next fetch replaces them).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import asdict, dataclass

from polyledger.errors import InputError, StorageError, one_line
from polyledger.ledger import Ledger, UnitState, queries
from polyledger.storage import MARKER, TEMP_MARK, BarStore, unit_relative_path
from polyledger.storage.layout import quarantine_stamp

# kinds that mean a done unit is not what the ledger says: repair queues it again
UNIT_PROBLEMS = ("missing_file", "unreadable_file", "row_mismatch", "checksum_mismatch")
# damaged units requeued per transaction by `repair`, each batch before its files move
REPAIR_BATCH = 500


@dataclass(frozen=True)
class Finding:
    kind: str  # one of UNIT_PROBLEMS, or extra_file, stray_temporary, stale_file, withdrawn_file
    path: str  # relative to the data folder
    detail: str = ""
    unit_id: int | None = None


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
    known: dict[str, str] = {}  # relative path -> state of the unit that owns it
    for row in queries.unit_files(ledger):
        owned = row.file_path or _expected_path(row.dataset, row.ticker, row.period_start)
        if owned:
            known[owned] = row.state
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
        elif known[relative] == UnitState.EMPTY_CONFIRMED.value:
            # the API answered no bars since this file was written: nothing fetches it again,
            # and folder reads (`data/minute/**`) would return the withdrawn bars
            findings.append(
                Finding(
                    "withdrawn_file",
                    relative,
                    "its unit has no bars now (empty_confirmed): `repair` moves it to .quarantine/",
                )
            )
        elif known[relative] != UnitState.DONE.value:
            findings.append(
                Finding("stale_file", relative, f"its unit is {known[relative]}: replaced when it is fetched")
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
    if not store.exists(row.file_path):
        return [Finding("missing_file", row.file_path, "the unit is done but its file is gone", row.id)]
    try:
        rows, checksum = store.rows_and_checksum(row.file_path, checksum=bool(checksums and row.checksum))
    except StorageError:  # the bytes could not be read: nothing is known of the file, and
        raise  # the check stops (one line) rather than call a good file damaged
    except Exception as exc:  # any parse failure means the file is damaged
        return [Finding("unreadable_file", row.file_path, one_line(exc, 200, with_type=True), row.id)]
    if rows != row.rows:
        return [
            Finding("row_mismatch", row.file_path, f"ledger says {row.rows} rows, file has {rows}", row.id)
        ]
    if checksum is not None and checksum != row.checksum:
        return [
            Finding("checksum_mismatch", row.file_path, "file content differs from what was written", row.id)
        ]
    return []


@dataclass(frozen=True)
class RepairResult:
    requeued: int
    quarantined: list[str]
    temporaries_removed: int

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
    one: refused unless `all_missing_is_fine` (else a typo re-queues the whole download)."""
    missing = sum(f.kind == "missing_file" for f in findings)
    if missing and not all_missing_is_fine:
        files = _listed_files(ledger)
        if missing == files:
            raise InputError(
                f"every one of the {files} files the ledger lists is missing from {store.location}: "
                "wrong --data? (repair --yes queues them all to be downloaded again)"
            )
    stamp = quarantine_stamp()
    quarantined: list[str] = []
    requeued = 0
    damaged = [f for f in findings if f.kind in UNIT_PROBLEMS and f.unit_id is not None]
    for start in range(0, len(damaged), REPAIR_BATCH):
        batch = damaged[start : start + REPAIR_BATCH]
        # the units back to pending *before* their files move: at no moment is a unit `done`
        # while its file is in .quarantine/ (stopped in between, by an error or a kill, a
        # unit is pending with its damaged file still in place: the next run replaces it)
        requeued += ledger.reset_done_units([f.unit_id for f in batch if f.unit_id is not None])
        for finding in batch:
            if store.exists(finding.path):  # an object store: copied, checked, then deleted
                quarantined.append(store.quarantine(finding.path, stamp))
    for finding in findings:  # bars the API no longer answers: kept aside, never deleted
        if finding.kind == "withdrawn_file" and store.exists(finding.path):
            quarantined.append(store.quarantine(finding.path, stamp))
    removed = sum(1 for f in findings if f.kind == "stray_temporary" and store.remove(f.path))
    return RepairResult(requeued=requeued, quarantined=quarantined, temporaries_removed=removed)

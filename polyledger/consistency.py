"""Do the files on disk and the ledger agree? (`audit --deep`, `repair`)

The ledger is the record: a `done` unit must have its file with the recorded row count
and checksum. Files the ledger does not know are reported, never deleted; a damaged
file is moved to `.quarantine/` before its unit is queued again, so no byte is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from polyledger.errors import InputError
from polyledger.ledger import Ledger, UnitState
from polyledger.storage import PART_NAME, TEMP_MARK, BarStore, unit_relative_path

QUARANTINE = ".quarantine"
# kinds that mean a done unit is not what the ledger says: repair queues it again
UNIT_PROBLEMS = ("missing_file", "unreadable_file", "row_mismatch", "checksum_mismatch")


@dataclass(frozen=True)
class Finding:
    kind: str  # one of UNIT_PROBLEMS, or extra_file, stray_temporary, stale_file
    path: str  # relative to the data folder
    detail: str = ""
    unit_id: int | None = None


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def deep_check(ledger: Ledger, store: BarStore, checksums: bool = True) -> list[Finding]:
    """Compare every `done` unit with its file, and every file with the ledger."""
    if not store.root.is_dir():
        files = ledger.query(
            "SELECT count(*) AS n FROM units WHERE state = 'done' AND file_path IS NOT NULL"
        )[0].n
        if files:  # a typo in --data must not make every file look missing (repair would re-queue all)
            raise InputError(
                f"data folder {store.root} does not exist, yet the ledger lists {files} files in it"
            )
    findings: list[Finding] = []
    known: dict[str, str] = {}  # relative path -> state of the unit that owns it
    for row in ledger.query(
        "SELECT id, dataset, ticker, period_start, state, rows, file_path, checksum FROM units"
    ):
        owned = row.file_path or _expected_path(row.dataset, row.ticker, row.period_start)
        if owned:
            known[owned] = row.state
        if row.state == UnitState.DONE.value and row.file_path:
            findings.extend(_check_unit_file(store, row, checksums))
    for dataset_dir in _dataset_dirs(store):
        for path in dataset_dir.rglob("*"):
            if not path.is_file() or QUARANTINE in path.parts:
                continue
            relative = path.relative_to(store.root).as_posix()
            if path.name.startswith(TEMP_MARK):
                findings.append(Finding("stray_temporary", relative, "left by an interrupted write"))
            elif path.name == PART_NAME and relative not in known:
                findings.append(Finding("extra_file", relative, "no unit in the ledger owns this file"))
            elif path.name == PART_NAME and known[relative] != UnitState.DONE.value:
                findings.append(
                    Finding(
                        "stale_file", relative, f"its unit is {known[relative]}: replaced when it is fetched"
                    )
                )
    return findings


def _expected_path(dataset: str, ticker: str, period_start: str) -> str | None:
    """Where a unit not yet done would write its file (a file written just before a crash
    or a failed batch settle is its, not a stranger's)."""
    try:
        return unit_relative_path(dataset, ticker, dt.date.fromisoformat(period_start))
    except (InputError, ValueError):
        return None


def _dataset_dirs(store: BarStore) -> list[Path]:
    if not store.root.is_dir():
        return []
    return [p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _check_unit_file(store: BarStore, row, checksums: bool) -> list[Finding]:  # type: ignore[no-untyped-def]
    path = store.path_of(row.file_path)
    if not path.is_file():
        return [Finding("missing_file", row.file_path, "the unit is done but its file is gone", row.id)]
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # any parse failure means the file is damaged
        return [Finding("unreadable_file", row.file_path, f"{type(exc).__name__}: {exc}"[:200], row.id)]
    if rows != row.rows:
        return [
            Finding("row_mismatch", row.file_path, f"ledger says {row.rows} rows, file has {rows}", row.id)
        ]
    if checksums and row.checksum and file_checksum(path) != row.checksum:
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


def repair(ledger: Ledger, store: BarStore, findings: list[Finding]) -> RepairResult:
    """Queue again every done unit whose file is missing or damaged (damaged files are moved
    to `.quarantine/` first) and remove stray temporaries. Extra files are left alone."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    quarantined: list[str] = []
    unit_ids: list[int] = []
    for finding in findings:
        if finding.kind not in UNIT_PROBLEMS or finding.unit_id is None:
            continue
        source = store.path_of(finding.path)
        if source.exists():
            target = store.root / QUARANTINE / stamp / finding.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            quarantined.append(target.relative_to(store.root).as_posix())
        unit_ids.append(finding.unit_id)
    requeued = 0
    if unit_ids:
        params = {f"u{i}": unit_id for i, unit_id in enumerate(unit_ids)}
        where = f"id IN ({', '.join(':' + k for k in params)})"
        requeued = ledger.reset_units(where, params, {UnitState.DONE})
    removed = sum(1 for f in findings if f.kind == "stray_temporary" and _unlink(store.path_of(f.path)))
    return RepairResult(requeued=requeued, quarantined=quarantined, temporaries_removed=removed)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False

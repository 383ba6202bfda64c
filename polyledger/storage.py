"""The Parquet layout and atomic writes: one file per unit, never half-written.

    data/minute/ticker=AAPL/year=2024/month=03/part.parquet
    data/day/ticker=AAPL/year=2024/part.parquet

Every file is written to a temporary name in its own folder, fsynced, then renamed over
the final name, so a crash leaves either the old file or the new one, never a part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl

from polyledger.errors import InputError, StorageError
from polyledger.ledger import StoredFile
from polyledger.periods import ET, REFERENCE_DATASETS
from polyledger.polygon.aggs import BAR_SCHEMA, to_stored_bars
from polyledger.universe import validate_ticker

TEMP_MARK = ".tmp-"
TEMP_SUFFIX = ".partial"  # not ".parquet": a `**/*.parquet` reader never sees a half file
PART_NAME = "part.parquet"


def unit_relative_path(dataset: str, ticker: str, period_start: dt.date) -> str:
    """Where a unit's file lives, relative to the data folder (forward slashes)."""
    validate_ticker(ticker)  # a ticker can never climb out of the data folder
    if dataset == "details":  # one file per build date: a universe as of D reads its own details
        return f"{dataset}/as_of={period_start.isoformat()}/ticker={ticker}/{PART_NAME}"
    if dataset in REFERENCE_DATASETS:
        return f"{dataset}/ticker={ticker}/{PART_NAME}"
    parts = [dataset, f"ticker={ticker}", f"year={period_start.year:04d}"]
    if dataset == "minute":
        parts.append(f"month={period_start.month:02d}")
    return "/".join([*parts, PART_NAME])


def bars_for_unit(raw: pl.DataFrame, ticker: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The unit's bars: those whose US/Eastern session date is in [start, end], each
    timestamp once (first seen wins), sorted by time, in the stored schema."""
    return split_by_unit(raw, ticker, [(start, end)])[0][0]


def split_by_unit(
    raw: pl.DataFrame, ticker: str, periods: Sequence[tuple[dt.date, dt.date]]
) -> list[tuple[pl.DataFrame, int]]:
    """`bars_for_unit` for several units at once, with how many repeated timestamps each
    unit's bars had (dropped; the first is kept). The raw bars are converted and sorted
    once, then each unit is a slice (session dates never decrease along sorted
    timestamps): filtering the whole buffer per unit cost a page's work per month."""
    if raw.height == 0:
        return [(pl.DataFrame(schema=BAR_SCHEMA), 0) for _ in periods]
    bars = to_stored_bars(raw, ticker).sort("timestamp", maintain_order=True)  # stable: first seen first
    dates = bars.get_column("timestamp").dt.convert_time_zone(str(ET)).dt.date()
    firsts = dates.search_sorted(pl.Series([start for start, _ in periods], dtype=pl.Date), side="left")
    lasts = dates.search_sorted(pl.Series([end for _, end in periods], dtype=pl.Date), side="right")
    out = []
    for first, last in zip(firsts, lasts, strict=True):
        unit = bars.slice(first, max(last - first, 0))
        unique = unit.unique(subset="timestamp", keep="first", maintain_order=True)
        out.append((unique, unit.height - unique.height))
    return out


def bars_outside(raw: pl.DataFrame, start: dt.date, end: dt.date) -> int:
    """How many raw bars fall outside the US/Eastern dates [start, end] that were asked for."""
    if raw.height == 0:
        return 0
    session_date = pl.from_epoch(raw.get_column("t"), time_unit="ms").dt.replace_time_zone("UTC")
    dates = session_date.dt.convert_time_zone(str(ET)).dt.date()
    return int((~dates.is_between(start, end, closed="both")).sum())


class BarStore:
    """The data folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def ensure_writable(self) -> None:
        """Create the data folder, or raise an InputError saying why it cannot be used."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{TEMP_MARK}probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"data folder {self.root} is not writable: {exc.strerror or exc}") from None

    def path_of(self, relative: str) -> Path:
        return self.root.joinpath(*relative.split("/"))

    def write_unit(self, dataset: str, ticker: str, period_start: dt.date, bars: pl.DataFrame) -> StoredFile:
        """Write a unit's bars atomically; returns what the ledger records about the file."""
        relative = unit_relative_path(dataset, ticker, period_start)
        final = self.path_of(relative)
        buffer = io.BytesIO()
        bars.write_parquet(buffer, compression="zstd", statistics=True)
        payload = buffer.getvalue()
        try:
            self._write_atomically(final, payload)
        except OSError as exc:
            raise StorageError(f"cannot write {relative}: {exc.strerror or exc}") from None
        return StoredFile(
            path=relative,
            rows=bars.height,
            checksum="sha256:" + hashlib.sha256(payload).hexdigest(),
            bytes=len(payload),
        )

    def _write_atomically(self, final: Path, payload: bytes) -> None:
        """Temporary name in the same folder, fsync, rename; the temporary never outlives a failure."""
        temporary = final.with_name(f"{TEMP_MARK}{uuid.uuid4().hex}-{PART_NAME}{TEMP_SUFFIX}")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(temporary, "xb") as handle:
                self._write_bytes(handle, payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        _fsync_folder(final.parent)

    def _write_bytes(self, handle: BinaryIO, payload: bytes) -> None:
        handle.write(payload)

    def temporaries(self) -> list[Path]:
        """Leftovers of interrupted writes."""
        if not self.root.exists():
            return []
        return [path for path in self.root.rglob(f"{TEMP_MARK}*") if path.is_file()]

    def clean_temporaries(self, older_than: float = 0.0) -> int:
        """Remove leftovers of interrupted writes (they never hold data the ledger counts).
        With another process writing here, pass `older_than` seconds so its in-flight
        files (renamed within a second of creation) are left alone."""
        removed = 0
        cutoff = time.time() - older_than
        for path in self.temporaries():
            try:
                if older_than and path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders for this."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

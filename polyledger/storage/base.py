"""What every data location offers, whatever holds the bytes.

Callers (the worker, consistency, quality, the notebook API) use only these methods, so
none of them knows which backend it has: a difference between backends is a method here,
never a branch there. `BarStore(location)` picks the backend from the location.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

import polars as pl

from polyledger.errors import InputError, LeaseLost, StorageError, one_line
from polyledger.ledger import StoredFile
from polyledger.storage.layout import QUARANTINE, quarantine_stamp, unit_relative_path


@dataclass(frozen=True)
class EncodedUnit:
    """A unit's file ready to be stored: what the ledger will record, and its bytes."""

    file: StoredFile
    payload: bytes


ADJUSTED_KEY = "polyledger.adjusted"  # in each bar file's Parquet metadata: "true" or "false"
MARKER = "polyledger-data.json"  # at the location's root: what its bars are, e.g. {"adjusted": true}


@dataclass(frozen=True)
class DataHome:
    """The data folder a ledger recorded at its first run (`storage/home.py`): its marker's
    random `id`, which travels with the folder, and where it was last used; `marked`
    False while the first run has claimed it but not yet written the id into its marker."""

    id: str
    location: str
    marked: bool = True
    # where the ledger itself was when it recorded the folder (None: recorded by an earlier
    # version): a ledger found elsewhere is a copy (or moved), and so may its folder be
    ledger: str | None = None

    def copy_refusal(self, store: BarStore) -> str:
        """One line: `store` carries this folder's marker id while the folder itself is
        still where the ledger recorded it: a copy (a backup), not the folder moved."""
        return (
            f"data folder {store} is a copy of this ledger's folder {self.location}, which is still "
            f"there with the same {MARKER} (id {self.id[:12]}): give --data {self.location}; to keep "
            f"the files at {store} instead, move that folder there rather than copy it (one folder "
            "holds the ledger's files)"
        )

    def refusal(self, store: BarStore) -> str:
        """One line: why `store` is not this ledger's folder, and what to do."""
        return (
            f"data folder {store} is not this ledger's: it uses {self.location} (marked by its first "
            f"run: {MARKER} id {self.id[:12]}); give --data that folder, or move that folder here whole "
            "(its marker with it), or use a new ledger for a new folder"
        )


class BarStore(ABC):
    """The data location: a local folder (`LocalStore`) or an object store URL such as
    `s3://bucket/prefix` (`ObjectStore`). `BarStore(location)` returns the right one."""

    location: str  # as the user gave it (a folder, or a URL without a trailing slash)
    protocol: str  # "file", "s3", "memory", ...
    remote: bool  # for describing the location only: behaviour differs through methods

    def __new__(cls, *args: object, **kwargs: object) -> BarStore:
        if cls is BarStore:  # the public constructor: the location picks the backend
            from polyledger.storage import backend_for  # (the backends import this module)

            cls = backend_for(args[0] if args else kwargs.get("location"))
        return super().__new__(cls)

    def __str__(self) -> str:
        return self.location

    # --- writing --------------------------------------------------------------------

    def write_unit(
        self,
        dataset: str,
        ticker: str,
        period_start: dt.date,
        bars: pl.DataFrame,
        *,
        adjusted: bool | None = None,
        still_ours: Callable[[], bool] | None = None,
        row_group_size: int | None = None,
        compression: str = "zstd",
    ) -> StoredFile:
        """Write a unit's bars atomically; returns what the ledger records about the file.

        `adjusted` (for bars) goes into the file's Parquet metadata as `polyledger.adjusted`,
        so a file says what it holds wherever it is copied. `still_ours()` is asked right
        before the file takes its final name: when it says no (the writer's lease ran out,
        the unit may have a new owner), nothing replaces the file and LeaseLost is raised."""
        encoded = self.encode_unit(
            dataset,
            ticker,
            period_start,
            bars,
            adjusted=adjusted,
            row_group_size=row_group_size,
            compression=compression,
        )
        return self.put_unit(encoded, still_ours)

    def encode_unit(
        self,
        dataset: str,
        ticker: str,
        period_start: dt.date,
        bars: pl.DataFrame,
        *,
        adjusted: bool | None = None,
        row_group_size: int | None = None,
        compression: str = "zstd",
    ) -> EncodedUnit:
        """A unit's file as bytes, with its name and checksum: the CPU half of `write_unit`
        (a writer may let go of the bars, and of its core, before the I/O half, `put_unit`)."""
        buffer = io.BytesIO()
        metadata = None if adjusted is None else {ADJUSTED_KEY: "true" if adjusted else "false"}
        # zstd level 2: polars' default level 3 costs 15% more CPU for files no smaller, level
        # 1 the same CPU for files 3-11% larger (bench/RESULTS.md, 2026-12-02 09:30; writing
        # is a large share of a run's CPU); `compression` lz4 for files kept only a while
        # (staged flat-file days)
        bars.write_parquet(
            buffer,
            compression=compression,  # type: ignore[arg-type]
            compression_level=2 if compression == "zstd" else None,
            statistics=True,
            metadata=metadata,
            row_group_size=row_group_size,  # small for staged days: a run of tickers is a few groups
        )
        payload = buffer.getvalue()
        return EncodedUnit(
            StoredFile(
                path=unit_relative_path(dataset, ticker, period_start),
                rows=bars.height,
                checksum="sha256:" + hashlib.sha256(payload).hexdigest(),
                bytes=len(payload),
            ),
            payload,
        )

    def put_unit(self, encoded: EncodedUnit, still_ours: Callable[[], bool] | None = None) -> StoredFile:
        """Store an encoded unit's file atomically (see `write_unit`); what the ledger records."""
        self._put(encoded.file.path, encoded.payload, still_ours)
        return encoded.file

    def withdraw_unit(
        self, relative: str, still_ours: Callable[[], bool] | None = None, *, keep: bool = True
    ) -> str | None:
        """Take the file of a unit fetched again that has no bars any more (a replaced day
        file without them; the API's answer empty now) out of its dataset folder, before its
        unit settles without a file: the ledger never says "no bars" while a read of the
        folder finds the old ones. The file is moved aside (`quarantine`), never deleted:
        bars once downloaded stay on disk; returns where it went, None when there was no
        file. `keep=False` deletes it instead: only for a staged flat-file day, a copy of the
        provider's file that is read again from the bucket whenever it is needed.
        LeaseLost when `still_ours()` says no, asked first and again last before the file
        leaves the folder (it stays there; on an object store a copy of it may be in
        .quarantine/ too); StorageError when the file stays."""
        self._check_still_ours(relative, still_ours)
        if not self.exists(relative):
            return None
        if not keep:
            if not self.remove(relative) and self.exists(relative):
                raise StorageError(
                    f"cannot remove {self.url_of(relative)}, which its unit has no bars for now"
                )
            return None
        try:
            # the lease asked again right before the step that takes the file out of the
            # dataset's folder (on an object store, after the copy: a delete is immediate)
            return self.quarantine(
                relative, before_remove=lambda: self._check_still_ours(relative, still_ours)
            )
        except LeaseLost:
            raise
        except Exception as exc:  # a disk, permissions, a network: the unit must not settle
            reason = one_line(exc, 300, with_type=not isinstance(exc, StorageError))
            raise StorageError(
                f"cannot move {self.url_of(relative)}, which its unit has no bars for now, to "
                f"{QUARANTINE}/: {reason}"
            ) from None

    def quarantine(
        self, relative: str, stamp: str | None = None, before_remove: Callable[[], None] | None = None
    ) -> str:
        """Move a file out of the dataset folders to `.quarantine/<stamp>/<relative>` (`stamp`
        UTC now unless given), never over a file already there (another `-N` folder then);
        returns its new path. Atomic as `move` is: an interruption leaves the file at least
        once, never nowhere. A local folder's `move` itself refuses a taken name
        (FileExistsError: the next folder is tried), so two quarantines racing under one
        stamp (two hosts, one second) keep both copies; an object store has only the look
        before its copy. `before_remove` as for `move`. StorageError (one line) when it
        cannot be moved."""
        stamp = stamp or quarantine_stamp()
        number = 1
        while True:
            target = (
                f"{QUARANTINE}/{stamp}/{relative}"
                if number == 1
                else f"{QUARANTINE}/{stamp}-{number}/{relative}"
            )
            if not self.exists(target):
                try:
                    self.move(relative, target, before_remove)
                    return target
                except FileExistsError:
                    pass  # taken since the look (another quarantine under this stamp): the next one
                except OSError as exc:  # a backend's own I/O error: one line, never a traceback
                    raise StorageError(
                        f"cannot move {self.url_of(relative)} to {QUARANTINE}/: "
                        f"{one_line(exc, 300, with_type=True)}"
                    ) from None
            number += 1

    @abstractmethod
    def _put(self, relative: str, payload: bytes, still_ours: Callable[[], bool] | None = None) -> None:
        """Store the whole payload under `relative` so that readers see the old file or the
        new one, never a part; raises StorageError (the run cannot go on), or LeaseLost
        when `still_ours()`, asked last before the old file is replaced, says no."""

    def marker(self) -> dict | None:
        """The location's marker (`polyledger-data.json`: what its bars are), or None when
        it has none yet; InputError when it is not one."""
        if not self.exists(MARKER):
            return None
        with self.open(MARKER) as handle:
            content = handle.read()
        try:
            marker = json.loads(content)
        except ValueError:
            marker = None
        if not isinstance(marker, dict):
            raise InputError(f"{self.url_of(MARKER)} is not a polyledger marker (a JSON object)")
        return marker

    def hold(
        self,
        ledger_id: str,
        *,
        adjusted: bool | None = None,
        samples: Sequence[tuple[str, str | None]] = (),
        home: DataHome | None = None,
        claimed: bool = False,
        write: bool = True,
    ) -> dict:
        """This location holds one ledger's files, and adjusted or raw bars (`adjusted`, when
        the run decides it): both recorded in its marker by the first run, checked by every
        later one; one line (InputError) when they differ. Returns the marker.

        `home` is the folder the ledger records (`storage/home.py`): a folder whose marker
        has another id is refused; so is one whose marker has no id, unless the ledger's
        first run claimed it and has not marked it yet (`claimed`) or it holds `samples`
        (the ledger's folder moved, its marker lost or written by an earlier version); it
        then gets the home's id. A folder
        not named for a ledger is this one's only if it holds `samples` (files the ledger
        says it stored, as it recorded them), or the ledger stored none and the folder holds
        no files: a moved folder is found, a second folder for one ledger's files is refused
        (its download would be split over two), and so is an earlier version's download for
        a new ledger. All checked before anything is written (`write=False`: only checked):
        a refused run leaves the folder as it was."""
        marker = self.marker() or {}
        self._check_marker(marker, ledger_id, adjusted, home)
        if home is not None and not claimed and "id" not in marker:
            # the ledger's folder moved with its marker lost (or an earlier version's marker):
            # its files say so; a new or another folder holds none of them
            if not samples or not all(self._holds(path, checksum) for path, checksum in samples):
                raise InputError(home.refusal(self))
        elif "ledger" not in marker:
            if samples and not all(self._holds(path, checksum) for path, checksum in samples):
                raise InputError(
                    f"data folder {self} holds none of this ledger's files (e.g. {samples[0][0]}): give "
                    "--data the folder that does (move it here whole, its marker with it), or use a new "
                    "ledger for a new folder"
                )
            unit_files = (name for name in self.walk() if not name.rsplit("/", 1)[-1].startswith("."))
            holds_files = not samples and next(unit_files, None) is not None
            if holds_files:
                # another process of this ledger names a folder before it writes a file: its
                # files are this ledger's when the marker names it now (runs starting together)
                marker = self.marker() or {}
                self._check_marker(marker, ledger_id, adjusted, home)
            if holds_files and "ledger" not in marker:
                # an earlier version's download, of a ledger not named: naming it for this
                # one would lock that ledger out of its own files (and replace them)
                raise InputError(
                    f"data folder {self} holds files of a ledger its marker does not name (an earlier "
                    "version's download): run that ledger on it first, or give this ledger its own --data"
                )
        if not write:
            return marker
        # the folder's own id: the one its ledger records (random, made by the first run: a
        # moved folder keeps it, another folder never has it)
        wanted = {**marker, "ledger": ledger_id}
        wanted.setdefault("id", home.id if home is not None else uuid.uuid4().hex)
        if adjusted is not None and "adjusted" not in marker:
            wanted["adjusted"] = adjusted
        if wanted != marker:
            # a new folder's marker is written once (a second ledger racing for it loses);
            # an earlier version's gets the keys it lacks
            marker = self._remark(wanted) if marker else self.mark(wanted)
            self._check_marker(marker, ledger_id, adjusted, home)
        return marker

    def _holds(self, relative: str, checksum: str | None) -> bool:
        """Is this ledger's file here: the path, and the bytes the ledger recorded (another
        ledger's file of the same ticker and month has the path, not the bytes)?"""
        if not self.exists(relative):
            return False
        return checksum is None or self.rows_and_checksum(relative)[1] == checksum

    def check_holder(self, ledger_id: str | None, home: DataHome | None = None) -> None:
        """Read-only: one line (InputError) when the location's marker names another ledger
        (`repair` would quarantine its files, a read would take them for this ledger's),
        or has an id other than the folder the ledger recorded (`home`: another folder of
        this ledger's, e.g. one a second run was given); a ledger without an id yet
        (planned by an earlier version, not run since) or a folder naming none passes."""
        if ledger_id is not None:
            self._check_marker(self.marker() or {}, ledger_id, None, home)

    def absolute_location(self) -> str:
        """The location as the ledger records it: the same whatever the working directory."""
        return self.location

    def same_place(self, other: BarStore) -> bool:
        """Are the two one location (reached by two names), not two?"""
        return self.absolute_location() == other.absolute_location()

    def _check_marker(
        self, marker: dict, ledger_id: str, adjusted: bool | None, home: DataHome | None = None
    ) -> None:
        marked = marker.get("adjusted")
        if adjusted is not None and marked is not None and marked is not adjusted:
            names = {True: "adjusted", False: "unadjusted"}
            held = names[marked] if isinstance(marked, bool) else f"adjusted={marked!r}"
            raise InputError(
                f"data folder {self} holds {held} bars ({MARKER}); use a separate data folder "
                f"for {names[adjusted]} bars"
            )
        if marker.get("ledger", ledger_id) != ledger_id:
            raise InputError(
                f"data folder {self} holds another ledger's files ({MARKER}): give this ledger its "
                "own --data folder"
            )
        if home is not None and marker.get("id", home.id) != home.id:
            raise InputError(home.refusal(self))

    def _remark(self, marker: dict) -> dict:
        """The marker replaced, atomically (a key added to it: never one changed)."""
        self._put(MARKER, json.dumps(marker, sort_keys=True).encode() + b"\n")
        current = self.marker()
        assert current is not None
        return current

    def mark(self, marker: dict) -> dict:
        """Record `marker` unless the location has one already; returns the one in place.
        Written once, atomically: a reader never sees part of it, and a second writer never
        replaces the first's."""
        current = self.marker()
        if current is None:
            self._put_once(MARKER, json.dumps(marker, sort_keys=True).encode() + b"\n")
            current = self.marker()
        assert current is not None
        return current

    @abstractmethod
    def _put_once(self, relative: str, payload: bytes) -> None:
        """Store the whole payload under `relative` unless something is there already (then
        do nothing); raises StorageError when it cannot be written."""

    @staticmethod
    def _check_still_ours(relative: str, still_ours: Callable[[], bool] | None) -> None:
        if still_ours is not None and not still_ours():
            raise LeaseLost(f"{relative} not written: the unit's lease ran out (it may have a new owner)")

    def _write_bytes(self, handle: BinaryIO, payload: bytes) -> None:
        """Where a payload meets an open file (the local backend's writes go through here:
        the one seam where tests put a full disk or a kill mid-file)."""
        handle.write(payload)

    @abstractmethod
    def ensure_writable(self) -> None:
        """Create the location if need be, or raise an InputError saying why it cannot be used."""

    @abstractmethod
    def temporaries(self, beside: Iterable[str] | None = None) -> Sequence[PurePath]:
        """Leftovers of interrupted writes, in the whole store or only beside the given unit
        files: local paths, or an object store's keys relative to its location."""

    @abstractmethod
    def clean_temporaries(self, beside: Iterable[str], older_than: float) -> int:
        """Remove leftovers of interrupted writes beside the given unit files, only those
        older than `older_than` seconds; returns how many were removed."""

    # --- reading --------------------------------------------------------------------

    @abstractmethod
    def ensure_readable(self) -> None:
        """Raise an InputError when the location surely is not there (reading it would
        report every file as unreadable)."""

    @abstractmethod
    def present(self) -> bool:
        """Is the data location there at all (a folder, or objects under the prefix)?"""

    @abstractmethod
    def url_of(self, relative: str) -> str:
        """What a reader opens: a local path or a URL."""

    @abstractmethod
    def scan_parquet(self, relatives: Sequence[str], **kwargs: object) -> pl.LazyFrame:
        """A lazy read of these files."""

    @abstractmethod
    def read_parquet(self, relative: str, **kwargs: object) -> pl.DataFrame:
        """One file, read now."""

    @abstractmethod
    def rows_and_checksum(self, relative: str, checksum: bool = True) -> tuple[int, str | None]:
        """A Parquet file's row count (from its footer) and, if asked, its `file_checksum`;
        raises whatever the reader raises for a damaged file, StorageError when the bytes
        could not be read (a request that failed, a permission: nothing said of the file)."""

    @abstractmethod
    def exists(self, relative: str) -> bool:
        """Is there a file at `relative`? StorageError when the store cannot say."""

    def surely_gone(self, relative: str) -> bool:
        """True only when the store says there is no file at `relative`: a file it cannot
        tell about (a request that failed) is taken to be there, for what forgets a file's
        record when it is gone (a pruned staged day: kept recorded, tried again later)."""
        try:
            return not self.exists(relative)
        except StorageError:
            return False

    @abstractmethod
    def open(self, relative: str) -> BinaryIO:
        """A file opened for reading (binary)."""

    @abstractmethod
    def walk(self) -> Iterator[str]:
        """Every file in the dataset folders (top-level folders not starting with '.'),
        relative to the location, with forward slashes."""

    @abstractmethod
    def root_files(self) -> Iterator[str]:
        """The files at the location's root itself (its marker; a stray `old.parquet`, or
        the temporary of a marker write that was killed), by name."""

    # --- moving and removing ----------------------------------------------------------

    @abstractmethod
    def remove(self, relative: str) -> bool:
        """Delete a file; False if it could not be."""

    @abstractmethod
    def move(self, source: str, target: str, before_remove: Callable[[], None] | None = None) -> None:
        """Move a file within the location; an interruption leaves it at least once.
        `before_remove()` is asked last before the file leaves `source` (it may raise, e.g.
        LeaseLost: the file then stays there; on an object store its copy stays too)."""


def file_checksum(source: Path | BinaryIO) -> str:
    """sha256 of a file, given its path or an open binary handle (read to the end)."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return file_checksum(handle)
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(1 << 20), b""):
        digest.update(block)
    return "sha256:" + digest.hexdigest()

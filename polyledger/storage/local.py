"""A local folder: every file is written to a temporary name in its own folder, fsynced,
then renamed over the final name, and the folder fsynced, so a crash leaves either the
old file or the new one, never a part (and the rename itself survives a power loss)."""

from __future__ import annotations

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl

from polyledger.errors import InputError, StorageError
from polyledger.storage.base import BarStore, file_checksum
from polyledger.storage.layout import PART_NAME, TEMP_MARK, is_file_url, temporary_name


class LocalStore(BarStore):
    """A data folder on this machine (also given as a `file://` URL)."""

    remote = False

    def __init__(self, location: Path | str) -> None:
        if is_file_url(location):
            location = _local_path_of_file_url(str(location))
        self.root = Path(location)
        self.location = str(self.root)
        self.protocol = "file"

    def absolute_location(self) -> str:
        return str(self.root.resolve())

    def same_place(self, other: BarStore) -> bool:
        """Also one folder under two paths (a symbolic link, a bind mount)."""
        if isinstance(other, LocalStore) and self.root.is_dir() and other.root.is_dir():
            try:
                return os.path.samefile(self.root, other.root)
            except OSError:
                pass
        return super().same_place(other)

    def path_of(self, relative: str) -> Path:
        """A file's path on this machine."""
        return self.root.joinpath(*relative.split("/"))

    # --- writing --------------------------------------------------------------------

    def ensure_writable(self) -> None:
        """A probe file written and removed in the folder, or, while it does not exist, in
        the nearest folder above it that does: the folder itself is made by the first write
        (the marker), after every check, so a refused run leaves no empty folder behind."""
        existing = self.root
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        try:
            if not existing.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
            probe = existing / f"{TEMP_MARK}probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"data folder {self.root} is not writable: {exc.strerror or exc}") from None

    def _put(self, relative: str, payload: bytes, still_ours: Callable[[], bool] | None = None) -> None:
        try:
            self._write_atomically(
                self.path_of(relative), payload, lambda: self._check_still_ours(relative, still_ours)
            )
        except OSError as exc:
            raise StorageError(f"cannot write {relative}: {exc.strerror or exc}") from None

    def _write_atomically(
        self, final: Path, payload: bytes, before_rename: Callable[[], None] | None = None
    ) -> None:
        """Temporary name in the same folder (its own for each write, so two writers never
        share one), fsync, `before_rename()` (it may raise), rename; the temporary never
        outlives a failure."""
        temporary = final.with_name(temporary_name(PART_NAME))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(temporary, "xb") as handle:
                self._write_bytes(handle, payload)
                handle.flush()
                os.fsync(handle.fileno())
            if before_rename is not None:
                before_rename()
            os.replace(temporary, final)
        except BaseException:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        _fsync_folder(final.parent)

    def _put_once(self, relative: str, payload: bytes) -> None:
        """A whole temporary, then a hard link to the final name: the link fails if a file
        is there (two first runs at once: the earlier one's stays)."""
        final = self.path_of(relative)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.with_name(temporary_name(final.name))
            try:
                with open(temporary, "xb") as handle:
                    self._write_bytes(handle, payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(temporary, final)
            except FileExistsError:
                pass
            finally:
                temporary.unlink(missing_ok=True)
            _fsync_folder(final.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {relative}: {exc.strerror or exc}") from None

    def temporaries(self, beside: Iterable[str] | None = None) -> list[Path]:
        if not self.root.exists():
            return []
        if beside is None:
            return [path for path in self.root.rglob(f"{TEMP_MARK}*") if path.is_file()]
        folders = {self.path_of(relative).parent for relative in beside}
        return [path for folder in folders for path in folder.glob(f"{TEMP_MARK}*") if path.is_file()]

    def clean_temporaries(self, beside: Iterable[str], older_than: float) -> int:
        """They never hold data the ledger counts; a younger one may belong to a writer
        that is slow but alive, so it stays."""
        removed = 0
        cutoff = time.time() - older_than
        for path in self.temporaries(beside):
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    # --- reading --------------------------------------------------------------------

    def ensure_readable(self) -> None:
        if not self.present():
            raise InputError(f"data folder {self.location} does not exist")

    def present(self) -> bool:
        return self.root.is_dir()

    def url_of(self, relative: str) -> str:
        return str(self.path_of(relative))

    def scan_parquet(self, relatives: Sequence[str], **kwargs: object) -> pl.LazyFrame:
        return pl.scan_parquet([self.url_of(relative) for relative in relatives], **kwargs)  # type: ignore[arg-type]

    def read_parquet(self, relative: str, **kwargs: object) -> pl.DataFrame:
        return pl.read_parquet(self.path_of(relative), **kwargs)  # type: ignore[arg-type]

    def rows_and_checksum(self, relative: str, checksum: bool = True) -> tuple[int, str | None]:
        import pyarrow.parquet as pq  # audits only: the writers never need it

        path = self.path_of(relative)
        try:
            footer = pq.read_metadata(path)  # the footer only
        except PermissionError as exc:  # not readable by this user: no damage to the file
            raise StorageError(f"cannot read {relative} in {self.root}: {exc.strerror or exc}") from None
        return footer.num_rows, file_checksum(path) if checksum else None

    def exists(self, relative: str) -> bool:
        return self.path_of(relative).is_file()

    def open(self, relative: str) -> BinaryIO:
        return self.path_of(relative).open("rb")

    def walk(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                for path in folder.rglob("*"):
                    if path.is_file():
                        yield path.relative_to(self.root).as_posix()

    def root_files(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.is_file():
                yield path.name

    # --- moving and removing ----------------------------------------------------------

    def remove(self, relative: str) -> bool:
        try:
            self.path_of(relative).unlink()
            return True
        except OSError:
            return False

    def move(self, source: str, target: str, before_remove: Callable[[], None] | None = None) -> None:
        """One rename (atomic), then both folders fsynced: the move survives a power loss.
        Never over a file at `target`: its name is first claimed by an exclusive create (an
        empty file; FileExistsError, nothing moved, when the name is taken, even by a move
        that looked a moment ago and found it free), then the rename replaces only that
        claim, `before_remove()` asked last before it. Stopped in between, an empty file
        stays at `target`, the file at `source`.
        StorageError (one line, as for a write) when the folder refuses it: a permission, a
        read-only or immutable folder, a full disk for the new folder."""
        path, origin = self.path_of(target), self.path_of(source)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            claimed = _claim_name(path)
        except OSError as exc:
            raise StorageError(f"cannot move {source} to {target}: {exc.strerror or exc}") from None
        if not claimed:  # the name is taken: the caller may try another
            raise FileExistsError(errno.EEXIST, "a file has this name already", target)
        renamed = False
        try:
            if before_remove is not None:
                before_remove()
            os.replace(origin, path)
            renamed = True
            _fsync_folder(path.parent)
            _fsync_folder(origin.parent)
        except OSError as exc:
            raise StorageError(f"cannot move {source} to {target}: {exc.strerror or exc}") from None
        finally:
            if not renamed:  # the claimed name given back: nothing moved
                with contextlib.suppress(OSError):  # left, it is an empty file in .quarantine/
                    path.unlink(missing_ok=True)


def _local_path_of_file_url(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    path = unquote(parsed.path)
    if os.name == "nt" and path.startswith("/") and len(path) > 2 and path[2] == ":":
        path = path[1:]  # file:///C:/data
    return Path(path)


def _claim_name(path: Path) -> bool:
    """Create `path` empty, only if nothing has that name (O_EXCL: one atomic step, on POSIX
    and Windows alike); False when something has."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileExistsError:
        return False
    os.close(descriptor)
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders for this."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

"""The Parquet layout and atomic writes: one file per unit, never half-written.

    data/minute/ticker=AAPL/year=2024/month=03/part.parquet
    data/day/ticker=AAPL/year=2024/part.parquet

Every file is written to a temporary name in its own folder, fsynced, then renamed over
the final name, so a crash leaves either the old file or the new one, never a part. In an
object store (`s3://bucket/prefix`, any fsspec URL) the same layout is written one whole
object per PUT, which is atomic there: no temporaries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl

from polyledger.errors import InputError, StorageError, one_line
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


def is_url(location: object) -> bool:
    """A location like `s3://bucket/prefix` (any fsspec protocol), not a local folder."""
    return isinstance(location, str) and "://" in location


class BarStore:
    """The data location: a local folder (atomic temporary + fsync + rename) or an object
    store URL such as `s3://bucket/prefix` (any fsspec protocol), where each unit's file is
    one PUT of the whole object (readers see the old object or the new one, never a part).
    S3 endpoint and credentials come from the standard AWS environment variables.

    Everything else (consistency, download, quality) goes through `exists`, `open`,
    `walk`, `remove`, `move` and `scan_parquet`, so it never cares which backend it is."""

    def __init__(self, root: Path | str) -> None:
        self.fs = None  # an fsspec filesystem for object stores; None for a local folder
        self.base = ""  # the location in the fsspec filesystem's own terms (bucket/prefix)
        if is_url(root) and str(root).lower().startswith("file://"):
            root = _local_path_of_file_url(str(root))
        if is_url(root):
            self.location = str(root).rstrip("/")
            self.protocol = self.location.split("://", 1)[0].lower()
            self.root = None  # type: ignore[assignment]
        else:
            self.root = Path(root)
            self.location = str(self.root)
            self.protocol = "file"

    @property
    def remote(self) -> bool:
        return self.root is None

    def __str__(self) -> str:
        return self.location

    def _filesystem(self):  # type: ignore[no-untyped-def]
        """The object store's fsspec filesystem, made on first use (its errors are InputErrors)."""
        if self.fs is None:
            import fsspec

            try:
                options = {"skip_instance_cache": True, "use_listings_cache": False}
                self.fs, self.base = fsspec.core.url_to_fs(self.location, **options)
            except (ImportError, ValueError) as exc:
                raise InputError(
                    f"cannot use data location {self.location}: {one_line(exc, 300, with_type=True)}"
                ) from None
            self.base = self.base.rstrip("/")
        return self.fs

    def _key(self, relative: str) -> str:
        self._filesystem()
        return f"{self.base}/{relative}" if self.base else relative

    def ensure_writable(self) -> None:
        """Create the data folder, or raise an InputError saying why it cannot be used.
        An object store is probed with a small put and delete (missing bucket, wrong
        credentials, no permission: one line, never a secret)."""
        if self.remote:
            fs = self._filesystem()
            probe = self._key(f"{TEMP_MARK}probe-{uuid.uuid4().hex}")
            try:
                fs.pipe_file(probe, b"")
                fs.rm_file(probe)
            except Exception as exc:  # botocore and fsspec raise many kinds; all mean "unusable"
                raise InputError(
                    f"data location {self.location} is not writable: {one_line(exc, 300, with_type=True)}"
                ) from None
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{TEMP_MARK}probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"data folder {self.root} is not writable: {exc.strerror or exc}") from None

    def path_of(self, relative: str) -> Path:
        """A local file's path (local folders only; use `url_of` for any backend)."""
        if self.remote:
            raise TypeError(f"{self.location} is not a local folder: use url_of()")
        return self.root.joinpath(*relative.split("/"))

    def url_of(self, relative: str) -> str:
        """What a reader opens: a local path, or a URL (with `storage_options` for polars)."""
        if self.remote:
            return f"{self.location}/{relative}"
        return str(self.path_of(relative))

    @property
    def storage_options(self) -> dict[str, str] | None:
        """polars' `storage_options` for an S3 location, from the standard AWS variables."""
        if self.protocol not in ("s3", "s3a"):
            return None
        options = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                options["aws_allow_http"] = "true"
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_SESSION_TOKEN", "aws_session_token"),
        ):
            if os.environ.get(variable):
                options[key] = os.environ[variable]
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["aws_region"] = region
        return options

    def scan_parquet(self, relatives: Sequence[str], **kwargs: object) -> pl.LazyFrame:
        """A lazy read of these files, whatever the backend."""
        urls = [self.url_of(relative) for relative in relatives]
        if not self.remote:
            return pl.scan_parquet(urls, **kwargs)  # type: ignore[arg-type]
        options = self.storage_options  # read from the environment: once
        if options is not None:
            return pl.scan_parquet(urls, storage_options=options, **kwargs)  # type: ignore[arg-type]
        fs = self._filesystem()  # a protocol polars cannot read itself: through fsspec
        frames = []
        for relative in relatives:
            with fs.open(self._key(relative), "rb") as handle:
                frames.append(pl.read_parquet(handle.read()).lazy())
        return pl.concat(frames) if frames else pl.LazyFrame()

    def read_parquet(self, relative: str, **kwargs: object) -> pl.DataFrame:
        if not self.remote:
            return pl.read_parquet(self.path_of(relative), **kwargs)  # type: ignore[arg-type]
        with self.open(relative) as handle:
            return pl.read_parquet(handle.read(), **kwargs)  # type: ignore[arg-type]

    def present(self) -> bool:
        """Is the data location there at all (a folder, or objects under the prefix)?"""
        if not self.remote:
            return self.root.is_dir()
        fs = self._filesystem()
        try:
            return bool(fs.exists(self.base)) if self.base else False
        except Exception:
            return False

    def exists(self, relative: str) -> bool:
        if not self.remote:
            return self.path_of(relative).is_file()
        return bool(self._filesystem().isfile(self._key(relative)))

    def open(self, relative: str) -> BinaryIO:
        """A file opened for reading (binary)."""
        if not self.remote:
            return self.path_of(relative).open("rb")
        return self._filesystem().open(self._key(relative), "rb")

    def walk(self) -> Iterator[str]:
        """Every file in the dataset folders (top-level folders not starting with '.'),
        relative to the location, with forward slashes."""
        if not self.remote:
            if not self.root.is_dir():
                return
            for folder in self.root.iterdir():
                if folder.is_dir() and not folder.name.startswith("."):
                    for path in folder.rglob("*"):
                        if path.is_file():
                            yield path.relative_to(self.root).as_posix()
            return
        fs = self._filesystem()
        prefix = f"{self.base}/" if self.base else ""
        for key in fs.find(self.base):
            relative = key[len(prefix) :] if key.startswith(prefix) else key
            if "/" in relative and not relative.startswith("."):
                yield relative

    def remove(self, relative: str) -> bool:
        """Delete a file; False if it could not be."""
        try:
            if self.remote:
                self._filesystem().rm_file(self._key(relative))
            else:
                self.path_of(relative).unlink()
            return True
        except OSError:
            return False

    def move(self, source: str, target: str) -> None:
        """Move a file within the location. On an object store: copy, check the copy, then
        delete the original, so an interruption leaves both, never neither."""
        if not self.remote:
            path = self.path_of(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path_of(source), path)
            return
        fs = self._filesystem()
        fs.copy(self._key(source), self._key(target))
        if fs.info(self._key(target))["size"] != fs.info(self._key(source))["size"]:
            raise StorageError(f"copying {source} to {target} did not give the same object")
        fs.rm_file(self._key(source))

    def write_unit(self, dataset: str, ticker: str, period_start: dt.date, bars: pl.DataFrame) -> StoredFile:
        """Write a unit's bars atomically; returns what the ledger records about the file."""
        relative = unit_relative_path(dataset, ticker, period_start)
        buffer = io.BytesIO()
        bars.write_parquet(buffer, compression="zstd", statistics=True)
        payload = buffer.getvalue()
        if self.remote:
            try:
                self._filesystem().pipe_file(self._key(relative), payload)  # one PUT: atomic
            except Exception as exc:  # network, permissions, bucket gone: the run cannot go on
                raise StorageError(
                    f"cannot write {relative} to {self.location}: {one_line(exc, 300, with_type=True)}"
                ) from None
        else:
            try:
                self._write_atomically(self.path_of(relative), payload)
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

    def temporaries(self, beside: Iterable[str] | None = None) -> list[Path]:
        """Leftovers of interrupted writes, in the whole store or only beside the given unit
        files (an object store has none: each object is one PUT)."""
        if self.remote or not self.root.exists():
            return []
        if beside is None:
            return [path for path in self.root.rglob(f"{TEMP_MARK}*") if path.is_file()]
        folders = {self.path_of(relative).parent for relative in beside}
        return [path for folder in folders for path in folder.glob(f"{TEMP_MARK}*") if path.is_file()]

    def clean_temporaries(self, beside: Iterable[str], older_than: float) -> int:
        """Remove leftovers of interrupted writes beside the given unit files (they never hold
        data the ledger counts). Only files older than `older_than` seconds: a younger one
        may belong to a writer that is slow but alive."""
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


def _local_path_of_file_url(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    path = unquote(parsed.path)
    if os.name == "nt" and path.startswith("/") and len(path) > 2 and path[2] == ":":
        path = path[1:]  # file:///C:/data
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders for this."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

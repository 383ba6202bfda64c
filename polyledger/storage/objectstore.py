"""An object store (`s3://bucket/prefix`, any fsspec protocol): the same layout, each
unit's file one PUT of the whole object, which is atomic there (readers see the old object
or the new one, never a part), so there are no temporaries. S3 endpoint and credentials
come from the standard AWS environment variables."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from polyledger.errors import InputError, StorageError, one_line
from polyledger.storage.base import BarStore, file_checksum
from polyledger.storage.layout import TEMP_MARK


class ObjectStore(BarStore):
    """Objects under a URL; the fsspec filesystem is made on first use."""

    remote = True

    def __init__(self, location: str) -> None:
        self.location = str(location).rstrip("/")
        self.protocol = self.location.split("://", 1)[0].lower()
        self.fs: Any = None  # the fsspec filesystem
        self.base = ""  # the location in the filesystem's own terms (bucket/prefix)

    def _filesystem(self) -> Any:
        """The fsspec filesystem (its errors are InputErrors)."""
        if self.fs is None:
            import fsspec

            try:
                options = {"skip_instance_cache": True, "use_listings_cache": False}
                self.fs, self.base = fsspec.core.url_to_fs(self.location, **options)
            except (ImportError, ValueError, OSError) as exc:  # OSError: a host not reached (ftp)
                raise InputError(
                    f"cannot use data location {self.location}: {one_line(exc, 300, with_type=True)}"
                ) from None
            self.base = self.base.rstrip("/")
        return self.fs

    def _key(self, relative: str) -> str:
        self._filesystem()
        return f"{self.base}/{relative}" if self.base else relative

    # --- writing --------------------------------------------------------------------

    def ensure_writable(self) -> None:
        """Probed with a small put and delete (missing bucket, wrong credentials, no
        permission: one line, never a secret)."""
        fs = self._filesystem()
        probe = self._key(f"{TEMP_MARK}probe-{uuid.uuid4().hex}")
        try:
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except Exception as exc:  # botocore and fsspec raise many kinds; all mean "unusable"
            raise InputError(
                f"data location {self.location} is not writable: {one_line(exc, 300, with_type=True)}"
            ) from None

    def _put(self, relative: str, payload: bytes, still_ours: Callable[[], bool] | None = None) -> None:
        self._check_still_ours(relative, still_ours)
        try:
            self._filesystem().pipe_file(self._key(relative), payload)  # one PUT: atomic
        except Exception as exc:  # network, permissions, bucket gone: the run cannot go on
            raise StorageError(
                f"cannot write {relative} to {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None

    def _put_once(self, relative: str, payload: bytes) -> None:
        """One PUT, unless the object is there. (Not conditional on the server: two first
        runs on one new location within the same moment would both write it.)"""
        try:
            fs, key = self._filesystem(), self._key(relative)
            if not fs.exists(key):
                fs.pipe_file(key, payload)
        except Exception as exc:  # network, permissions, bucket gone
            raise StorageError(
                f"cannot write {relative} to {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None

    def temporaries(self, beside: Iterable[str] | None = None) -> list[Path]:
        return []  # each object is one PUT: nothing is ever left half-written

    def clean_temporaries(self, beside: Iterable[str], older_than: float) -> int:
        return 0

    # --- reading --------------------------------------------------------------------

    def ensure_readable(self) -> None:
        """Not probed: a prefix exists only through its objects, and a file that cannot be
        read is reported as such, one by one."""

    def present(self) -> bool:
        fs = self._filesystem()
        try:
            return bool(fs.exists(self.base)) if self.base else False
        except Exception:
            return False

    def url_of(self, relative: str) -> str:
        """A URL (polars reads it with `storage_options`)."""
        return f"{self.location}/{relative}"

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
        urls = [self.url_of(relative) for relative in relatives]
        options = self.storage_options  # read from the environment: once
        if options is not None:
            return pl.scan_parquet(urls, storage_options=options, **kwargs)  # type: ignore[arg-type]
        fs = self._filesystem()  # a protocol polars cannot read itself: through fsspec
        frames = []
        for relative in relatives:
            with fs.open(self._key(relative), "rb") as handle:
                frames.append(pl.read_parquet(handle.read()).lazy())
        # files of one dataset written before and after a column was added: that column null
        schema = kwargs.get("schema")
        if not frames:
            return pl.LazyFrame(schema=schema) if schema else pl.LazyFrame()  # type: ignore[arg-type]
        frame = pl.concat(frames, how="diagonal_relaxed")
        return frame.select([pl.col(n).cast(t) for n, t in schema.items()]) if schema else frame  # type: ignore[union-attr]

    def read_parquet(self, relative: str, **kwargs: object) -> pl.DataFrame:
        with self.open(relative) as handle:
            return pl.read_parquet(handle.read(), **kwargs)  # type: ignore[arg-type]

    def rows_and_checksum(self, relative: str, checksum: bool = True) -> tuple[int, str | None]:
        """One GET per object: the footer and the checksum come from the same bytes."""
        import pyarrow as pa  # audits only: the writers never need it
        import pyarrow.parquet as pq

        with self.open(relative) as handle:
            content = handle.read()
        rows = pq.read_metadata(pa.BufferReader(content)).num_rows
        return rows, file_checksum(io.BytesIO(content)) if checksum else None

    def exists(self, relative: str) -> bool:
        return bool(self._filesystem().isfile(self._key(relative)))

    def open(self, relative: str) -> BinaryIO:
        return self._filesystem().open(self._key(relative), "rb")

    def walk(self) -> Iterator[str]:
        """Only objects under the prefix: a listing may name the prefix itself (S3, while
        another process's probe comes and goes), which is no file in it."""
        fs = self._filesystem()
        prefix = f"{self.base}/" if self.base else ""
        for key in fs.find(self.base):
            if not key.startswith(prefix):
                continue
            relative = key[len(prefix) :]
            if "/" in relative and not relative.startswith("."):
                yield relative

    def root_files(self) -> Iterator[str]:
        fs = self._filesystem()
        prefix = f"{self.base}/" if self.base else ""
        for key in fs.find(self.base, maxdepth=1):
            relative = key[len(prefix) :] if key.startswith(prefix) else ""
            if relative and "/" not in relative:
                yield relative

    # --- moving and removing ----------------------------------------------------------

    def remove(self, relative: str) -> bool:
        try:
            self._filesystem().rm_file(self._key(relative))
            return True
        except OSError:
            return False

    def move(self, source: str, target: str) -> None:
        """Copy, check the copy, then delete the original, so an interruption leaves both,
        never neither."""
        fs = self._filesystem()
        try:
            fs.copy(self._key(source), self._key(target))
            same = fs.info(self._key(target))["size"] == fs.info(self._key(source))["size"]
        except Exception as exc:  # network, permissions, bucket gone (as for `_put`)
            raise StorageError(
                f"cannot move {source} to {target} in {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None
        if not same:
            raise StorageError(f"copying {source} to {target} did not give the same object")
        try:
            fs.rm_file(self._key(source))
        except Exception as exc:  # the copy is whole: the file is there twice, never nowhere
            raise StorageError(
                f"cannot remove {source} from {self.location} after copying it to {target}: "
                f"{one_line(exc, 300, with_type=True)}"
            ) from None

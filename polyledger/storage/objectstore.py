"""An object store (`s3://bucket/prefix`, any fsspec protocol): the same layout, each
file uploaded whole to a temporary key beside its final one, then copied over the final key
on the server (S3 CopyObject: no bytes sent again) once the writer's lease is checked, and
the temporary deleted, as the local backend renames its temporary: readers see the old
object or the new one, never a part, and a writer whose lease ran out while its upload was
in flight never replaces the file of the unit's new owner. S3 endpoint and credentials
come from the standard AWS environment variables."""

from __future__ import annotations

import io
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import polars as pl

from polyledger.errors import InputError, LeaseLost, StorageError, one_line
from polyledger.storage.base import BarStore, file_checksum
from polyledger.storage.layout import TEMP_MARK, temporary_name


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
        """Uploaded to a temporary key, `still_ours()` asked, copied over the final key on
        the server, the temporary deleted. Why not one PUT to the final key: its lease check
        comes before an upload of any length (a slow link, a stalled host), so a late PUT
        replaced the file of the unit's new owner; here the window is the copy's, not the
        upload's (locally: the rename's). Any failure removes the temporary (best effort):
        LeaseLost when the lease is gone, StorageError (one line) otherwise."""
        fs, final = self._filesystem(), self._key(relative)
        temporary = self._temporary_key(relative)
        try:
            fs.pipe_file(temporary, payload)
            self._check_still_ours(relative, still_ours)
            fs.cp_file(temporary, final)  # server-side (CopyObject): whole, or not at all
            fs.rm_file(temporary)
        except BaseException as exc:
            self._discard(temporary)
            if isinstance(exc, LeaseLost) or not isinstance(exc, Exception):
                raise  # the lease gone, or an interrupt: as they are
            # network, permissions, bucket gone: the run cannot go on
            raise StorageError(
                f"cannot write {relative} to {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None

    def _put_once(self, relative: str, payload: bytes) -> None:
        """One PUT, unless the object is there (no lease to check, so no temporary: a PUT
        is whole or nothing). Not conditional on the server: two first runs on one new
        location within the same moment would both write it."""
        try:
            fs, key = self._filesystem(), self._key(relative)
            if not fs.exists(key):
                fs.pipe_file(key, payload)
        except Exception as exc:  # network, permissions, bucket gone
            raise StorageError(
                f"cannot write {relative} to {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None

    def _temporary_key(self, relative: str) -> str:
        """Beside the final key, named as the local backend names its temporaries (its own
        for each write; not `*.parquet`, so no reader of the prefix takes it for a file)."""
        folder, _, name = relative.rpartition("/")
        temporary = temporary_name(name)
        return self._key(f"{folder}/{temporary}" if folder else temporary)

    def _discard(self, key: str) -> None:
        """Delete an object if it can be (never hides the error that came first)."""
        try:
            self._filesystem().rm_file(key)
        except Exception:  # already gone, or the store unreachable: a stray for `repair`
            pass

    def temporaries(self, beside: Iterable[str] | None = None) -> list[PurePosixPath]:
        """Keys relative to the location (`.tmp-*` objects a killed writer left), in the
        whole store or only beside the given unit files."""
        return [PurePosixPath(relative) for relative, _ in self._temporaries(beside)]

    def clean_temporaries(self, beside: Iterable[str], older_than: float) -> int:
        """As the local backend's: a younger one may belong to a writer that is slow but
        alive, so it stays (ages by the store's clock against this host's). Best effort: a
        listing or a delete that fails leaves the temporary for `repair`."""
        removed = 0
        cutoff = time.time() - older_than
        try:
            for relative, modified in self._temporaries(beside):
                if modified is None or modified > cutoff:
                    continue  # young, or of an age the store does not say: `repair`'s
                if self.remove(relative):
                    removed += 1
        except Exception:  # a listing refused: nothing more removed now
            pass
        return removed

    def _temporaries(self, beside: Iterable[str] | None) -> Iterator[tuple[str, float | None]]:
        """(relative key, modified time as a POSIX timestamp if known) of each temporary."""
        fs = self._filesystem()
        listed: dict[str, float] = {}  # modified times a listing gave already
        if beside is None:
            found: Iterable[str] = itertools.chain(self.walk(), self.root_files())
            relatives = [r for r in found if r.rsplit("/", 1)[-1].startswith(TEMP_MARK)]
        else:
            relatives = []
            for folder in sorted({relative.rpartition("/")[0] for relative in beside}):
                try:
                    entries = fs.ls(self._key(folder) if folder else self.base, detail=True)
                except FileNotFoundError:
                    continue
                prefix = f"{self.base}/" if self.base else ""
                for entry in entries:
                    name = str(entry["name"]).rstrip("/")
                    if entry.get("type") == "file" and name.rsplit("/", 1)[-1].startswith(TEMP_MARK):
                        relative = name[len(prefix) :] if name.startswith(prefix) else name
                        relatives.append(relative)
                        if entry.get("LastModified") is not None:  # said by the listing: not asked again
                            listed[relative] = entry["LastModified"].timestamp()
        for relative in relatives:
            if relative in listed:
                yield relative, listed[relative]
                continue
            try:
                modified = fs.modified(self._key(relative)).timestamp()
            except Exception:  # gone meanwhile, or a store that does not say
                modified = None
            yield relative, modified

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

        try:
            with self.open(relative) as handle:
                content = handle.read()
        except FileNotFoundError:
            raise
        except Exception as exc:  # a GET that failed says nothing about the file's bytes
            raise StorageError(
                f"cannot read {relative} in {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None
        rows = pq.read_metadata(pa.BufferReader(content)).num_rows
        return rows, file_checksum(io.BytesIO(content)) if checksum else None

    def exists(self, relative: str) -> bool:
        """A HEAD of the key: False only when the store says there is no such object (not
        fsspec's `isfile`, which answers False for any error: a 500, a throttle, a timeout
        would read as "missing", and repair would queue a good unit again and move its file);
        StorageError (one line) when the store cannot say."""
        try:
            info = self._filesystem().info(self._key(relative))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise StorageError(
                f"cannot tell whether {relative} is in {self.location}: {one_line(exc, 300, with_type=True)}"
            ) from None
        return info.get("type") == "file"

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

    def move(self, source: str, target: str, before_remove: Callable[[], None] | None = None) -> None:
        """Copy, check the copy, `before_remove()`, then delete the original, so an
        interruption leaves both, never neither."""
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
        if before_remove is not None:
            before_remove()
        try:
            fs.rm_file(self._key(source))
        except Exception as exc:  # the copy is whole: the file is there twice, never nowhere
            raise StorageError(
                f"cannot remove {source} from {self.location} after copying it to {target}: "
                f"{one_line(exc, 300, with_type=True)}"
            ) from None

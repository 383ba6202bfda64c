"""The provider's flat-file bucket: credentials from the environment, one day object read
to a local file, a folder's ETags listed.

Its own S3 access key and secret (never the API key, never AWS_* variables: those are the
`--data s3://` store's), through botocore (already there under s3fs). Every error becomes
one of ours: a missing object is `missing_file` (permanent), a 5xx or a cut connection is
transient, and a 403 stops the run with one line naming the likely causes (the bucket does
not say which).
"""

from __future__ import annotations

import gzip
import os
import shutil
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyledger.errors import (
    FatalRunError,
    InputError,
    PermanentError,
    TransientError,
    one_line,
    status_class,
)
from polyledger.secrets import register_secret

KEY_ID_ENV = "POLYLEDGER_FLATFILES_KEY_ID"
SECRET_ENV = "POLYLEDGER_FLATFILES_SECRET"
ENDPOINT_ENV = "POLYLEDGER_FLATFILES_ENDPOINT"
BUCKET_ENV = "POLYLEDGER_FLATFILES_BUCKET"
DEFAULT_ENDPOINT = "https://files.massive.com"  # formerly files.polygon.io
DEFAULT_BUCKET = "flatfiles"
DEFAULT_BATCH = 128  # ticker units built per pass over a period's staged days (memory: their bars)


def _gunzip(raw: Any) -> Any:
    """A streaming gzip reader: ISA-L's where installed (python-isal: a third of zlib's CPU,
    which is most of a day file's read), else the standard library's."""
    try:
        from isal import igzip
    except ImportError:
        return gzip.GzipFile(fileobj=raw)
    return igzip.IGzipFile(fileobj=raw)


class FlatFilesDenied(FatalRunError):
    """The bucket answered 403: no unit can be read, so the run stops."""

    error_class = "flatfiles_denied"


def denied_message(endpoint: str, bucket: str) -> str:
    return (
        f"flat files: access denied (403) by {endpoint} bucket {bucket!r}; likely causes: wrong keys "
        f"({KEY_ID_ENV}, {SECRET_ENV}: the flat-file S3 keys from the dashboard, not the API key), a plan "
        f"without flat files, or a wrong endpoint or bucket ({ENDPOINT_ENV}, {BUCKET_ENV})"
    )


@dataclass(frozen=True)
class FlatFilesConfig:
    """Where the flat files are and the keys to read them (picklable: `run --processes`)."""

    key_id: str
    secret: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    bucket: str = DEFAULT_BUCKET
    batch: int = DEFAULT_BATCH
    workdir: str | None = None  # where a day's decompressed CSV waits to be read (temp dir)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> FlatFilesConfig:
        """From POLYLEDGER_FLATFILES_*; an InputError naming the variables when keys are missing."""
        env = os.environ if environ is None else environ
        key_id, secret = env.get(KEY_ID_ENV, "").strip(), env.get(SECRET_ENV, "").strip()
        if not key_id or not secret:
            raise InputError(
                f"no flat-file keys: set {KEY_ID_ENV} and {SECRET_ENV} (the S3 access key and secret "
                "of your flat-files dashboard; the API key is not used there)"
            )
        register_secret(secret)  # redacted from every log line and error from now on
        endpoint = (env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise InputError(f"{ENDPOINT_ENV} must look like https://host[:port], got {endpoint!r}")
        return cls(key_id, secret, endpoint, env.get(BUCKET_ENV) or DEFAULT_BUCKET, **overrides)


@dataclass(frozen=True)
class DayObject:
    key: str
    etag: str
    size: int  # bytes of the gzip object


class FlatFilesSource:
    """One bucket; its botocore client is made on first use (thread-safe after that)."""

    def __init__(self, config: FlatFilesConfig) -> None:
        self.config = config
        self._client: Any = None
        self._lock = threading.Lock()
        self.requests = 0  # GETs and LISTs sent
        self.bytes = 0  # compressed bytes read

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import botocore.session
                from botocore.config import Config

                session = botocore.session.Session()
                self._client = session.create_client(
                    "s3",
                    endpoint_url=self.config.endpoint,
                    aws_access_key_id=self.config.key_id,
                    aws_secret_access_key=self.config.secret,
                    region_name="us-east-1",
                    config=Config(
                        signature_version="s3v4",
                        s3={"addressing_style": "path"},
                        retries={"max_attempts": 4, "mode": "standard"},
                        connect_timeout=10,
                        read_timeout=60,
                        max_pool_connections=32,
                    ),
                )
            return self._client

    def probe(self, prefix: str) -> None:
        """One small LIST: a 403 (or an unreachable endpoint) is known before any unit is claimed."""
        try:
            self._count(0)
            self.client().list_objects_v2(Bucket=self.config.bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:  # noqa: BLE001 - each mapped to one of ours
            error = self._error(exc, prefix)
            if isinstance(error, FatalRunError):
                raise error from None
            raise InputError(f"flat files: cannot list {self.config.endpoint}: {one_line(error)}") from None

    def fetch_day(self, key: str, into: Path) -> DayObject:
        """The object's CSV, decompressed as it streams into `into` (a day of the whole
        market is never held in memory); its ETag and size."""
        try:
            answer = self.client().get_object(Bucket=self.config.bucket, Key=key)
            size = int(answer.get("ContentLength") or 0)
            self._count(size)
            with _gunzip(answer["Body"]) as unzipped, open(into, "wb") as out:
                shutil.copyfileobj(unzipped, out, 1 << 20)
            return DayObject(key, str(answer.get("ETag", "")).strip('"'), size)
        except Exception as exc:  # noqa: BLE001 - each mapped to one of ours
            raise (self._denied_object(key) if _object_denied(exc) else self._error(exc, key)) from None

    def _denied_object(self, key: str) -> Exception:
        """A GET of one object answered 403, which is not always the keys: S3 answers 403
        rather than 404 for a missing object to keys that may not list, and a plan may not
        include every year. A LIST of the key tells which: not listed is `missing_file`,
        listed is `not_entitled` (that day's units fail, the run goes on); the LIST denied
        too is the keys or the plan, and stops the run."""
        try:
            self._count(0)
            page = self.client().list_objects_v2(Bucket=self.config.bucket, Prefix=key, MaxKeys=1)
        except Exception as exc:  # noqa: BLE001 - each mapped to one of ours
            return self._error(exc, key)
        if any(item.get("Key") == key for item in page.get("Contents", ())):
            return PermanentError(
                f"flat file {key}: access denied (403) to an object the bucket lists: "
                "a plan whose flat files do not reach that day?",
                error_class="not_entitled",
            )
        return PermanentError(f"flat file {key} is not in the bucket (403)", error_class="missing_file")

    def list_etags(self, prefix: str) -> dict[str, str]:
        """{key: ETag} of every object under `prefix` (a thousand per request)."""
        found: dict[str, str] = {}
        try:
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.config.bucket, Prefix=prefix)
            )
            for page in pages:
                self._count(0)
                for item in page.get("Contents", ()):
                    found[item["Key"]] = str(item.get("ETag", "")).strip('"')
        except Exception as exc:  # noqa: BLE001 - each mapped to one of ours
            raise self._error(exc, prefix) from None
        return found

    def _count(self, size: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += size

    def _error(self, exc: Exception, key: str) -> Exception:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ReadTimeoutError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return FlatFilesDenied(denied_message(self.config.endpoint, self.config.bucket))
            if code == "NoSuchBucket":  # a 404 too: said before a missing key
                return FlatFilesDenied(
                    f"flat files: no bucket {self.config.bucket!r} at {self.config.endpoint}"
                )
            if status == 404 or code in ("NoSuchKey", "NotFound"):
                return PermanentError(f"flat file {key} is not in the bucket", error_class="missing_file")
            if status >= 500 or code == "SlowDown":
                return TransientError(
                    f"flat file {key}: HTTP {status} {code}", error_class=status_class(status or 503)
                )
            return PermanentError(
                f"flat file {key}: HTTP {status} {code}", error_class=status_class(status or 400)
            )
        if isinstance(exc, ReadTimeoutError):
            return TransientError(f"flat file {key}: read timed out", error_class="timeout")
        if isinstance(exc, (ConnectionError, HTTPClientError, ConnectionResetError)):
            return TransientError(f"flat file {key}: {type(exc).__name__}", error_class="connection")
        if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)) or type(exc).__module__.startswith(
            "isal"
        ):
            return TransientError(f"flat file {key}: cut short or not gzip ({exc})", error_class="truncated")
        if isinstance(exc, OSError):  # the local temporary file: the disk
            from polyledger.errors import StorageError

            return StorageError(f"flat files: cannot write the day's temporary file: {exc}")
        return exc


def _object_denied(exc: Exception) -> bool:
    """A 403 that may be about the object rather than the keys (wrong keys say so)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status == 403 and code not in ("InvalidAccessKeyId", "SignatureDoesNotMatch")

"""Where each unit's file lives in the data location, the same for every backend (each
dataset's spec says where: `polyledger/datasets/`), e.g.

    minute/ticker=AAPL/year=2024/month=03/part.parquet
    day/ticker=AAPL/year=2024/part.parquet
    splits/ticker=AAPL/part.parquet
    details/as_of=2024-03-01/ticker=AAPL/part.parquet
    grouped_daily/year=2024/month=03/date=2024-03-08/part.parquet

and how a temporary is named, so that readers and audits can tell it from a real file, and
where files taken out of the dataset folders are kept (`.quarantine/`, a dot folder: no
dataset's read, no audit and no walk of the location sees it).
"""

from __future__ import annotations

import datetime as dt
import uuid

from polyledger import datasets
from polyledger.datasets.spec import PART_NAME

__all__ = [
    "PART_NAME",
    "QUARANTINE",
    "TEMP_MARK",
    "TEMP_SUFFIX",
    "is_file_url",
    "temporary_name",
    "is_url",
    "unit_relative_path",
]

TEMP_MARK = ".tmp-"
TEMP_SUFFIX = ".partial"  # not ".parquet": a `**/*.parquet` reader never sees a half file
QUARANTINE = ".quarantine"  # .quarantine/<UTC stamp>/<the file's path>: kept aside, never deleted


def temporary_name(name: str) -> str:
    """A file's temporary name beside it while it is written: its own for each write (two
    writers never share one), marked so `audit`, `repair` and the cleaners know it."""
    return f"{TEMP_MARK}{uuid.uuid4().hex}-{name}{TEMP_SUFFIX}"


def quarantine_stamp() -> str:
    """The folder of `.quarantine/` files moved aside now go to (UTC, to the second)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def unit_relative_path(dataset: str, ticker: str, period_start: dt.date) -> str:
    """Where a unit's file lives, relative to the data location (forward slashes)."""
    spec = datasets.get(dataset)
    datasets.check_key(spec, ticker)  # a ticker can never climb out of the data folder
    return spec.layout(ticker, period_start)


def is_url(location: object) -> bool:
    """A location like `s3://bucket/prefix` (any fsspec protocol), not a local folder."""
    return isinstance(location, str) and "://" in location


def is_file_url(location: object) -> bool:
    """A `file://` URL: a local folder spelled as a URL."""
    return is_url(location) and str(location).lower().startswith("file://")

"""Where each unit's file lives in the data location, the same for every backend:

    minute/ticker=AAPL/year=2024/month=03/part.parquet
    day/ticker=AAPL/year=2024/part.parquet
    splits/ticker=AAPL/part.parquet
    details/as_of=2024-03-01/ticker=AAPL/part.parquet

and how a temporary is named, so that readers and audits can tell it from a real file.
"""

from __future__ import annotations

import datetime as dt

from polyledger.periods import REFERENCE_DATASETS
from polyledger.symbols import validate_ticker

PART_NAME = "part.parquet"
TEMP_MARK = ".tmp-"
TEMP_SUFFIX = ".partial"  # not ".parquet": a `**/*.parquet` reader never sees a half file


def unit_relative_path(dataset: str, ticker: str, period_start: dt.date) -> str:
    """Where a unit's file lives, relative to the data location (forward slashes)."""
    validate_ticker(ticker)  # a ticker can never climb out of the data folder
    if dataset == "details":  # one file per build date: a universe as of D reads its own details
        return f"{dataset}/as_of={period_start.isoformat()}/ticker={ticker}/{PART_NAME}"
    if dataset in REFERENCE_DATASETS:
        return f"{dataset}/ticker={ticker}/{PART_NAME}"
    parts = [dataset, f"ticker={ticker}", f"year={period_start.year:04d}"]
    if dataset == "minute":
        parts.append(f"month={period_start.month:02d}")
    return "/".join([*parts, PART_NAME])


def is_url(location: object) -> bool:
    """A location like `s3://bucket/prefix` (any fsspec protocol), not a local folder."""
    return isinstance(location, str) and "://" in location


def is_file_url(location: object) -> bool:
    """A `file://` URL: a local folder spelled as a URL."""
    return is_url(location) and str(location).lower().startswith("file://")

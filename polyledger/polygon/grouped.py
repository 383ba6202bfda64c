"""The grouped daily endpoint: every symbol's daily bar for one date in one response
(`T` = the ticker; `t` = 16:00 ET of the date, unlike /range's 00:00 ET).

A body that is not the documented shape is a transient `bad_shape` error, never an
empty day; a `resultsCount` other than the number of bars sent is one too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
import polars as pl

from polyledger.errors import TransientError, one_line
from polyledger.polygon.aggs import RAW_BAR, SUCCESS_STATUSES

# one bar per symbol: the /range bar with the ticker as `T`
GROUPED_BAR = {"T": pl.String, **dict(RAW_BAR.to_schema())}
REQUIRED = ("T", "t", "o", "h", "l", "c", "v")


@dataclass(frozen=True)
class GroupedPage:
    bars: pl.DataFrame  # GROUPED_BAR columns, as sent
    next_url: str | None
    request_id: str | None
    adjusted: bool | None


def grouped_url(base_url: str, day: dt.date) -> str:
    return f"{base_url}/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}"


def decode_grouped(body: bytes) -> GroupedPage:
    """Parse one grouped daily body; raises TransientError(invalid_json/bad_shape)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TransientError(
            f"undecodable grouped daily body: {one_line(exc, 100)}", error_class="invalid_json"
        ) from None
    if not isinstance(payload, dict) or payload.get("status") not in SUCCESS_STATUSES:
        raise TransientError("grouped daily body is not an OK JSON object", error_class="bad_shape")
    results = payload.get("results")
    if not results:
        if payload.get("resultsCount"):
            raise TransientError("resultsCount > 0 but no results", error_class="bad_shape")
        results = []
    if not isinstance(results, list) or not all(isinstance(row, dict) for row in results):
        raise TransientError("grouped daily results are not a list of objects", error_class="bad_shape")
    try:
        bars = pl.DataFrame(
            [{name: row.get(name) for name in GROUPED_BAR} for row in results],
            schema=GROUPED_BAR,
            strict=False,
        )
    except Exception as exc:  # a value of the wrong type: polars names it
        raise TransientError(f"grouped daily bars: {one_line(exc, 100)}", error_class="bad_shape") from None
    missing = [name for name in REQUIRED if bars.get_column(name).null_count()]
    if missing:
        raise TransientError(f"grouped bars without {', '.join(missing)}", error_class="bad_shape")
    count = payload.get("resultsCount")
    if count is not None and count != bars.height:
        raise TransientError(f"resultsCount {count} but {bars.height} bars", error_class="bad_shape")
    next_url, request_id, adjusted = (payload.get(k) for k in ("next_url", "request_id", "adjusted"))
    return GroupedPage(
        bars=bars,
        next_url=next_url if isinstance(next_url, str) and next_url else None,
        request_id=str(request_id) if request_id is not None else None,
        adjusted=adjusted if isinstance(adjusted, bool) else None,
    )

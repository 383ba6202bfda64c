"""Decoding an aggregates page straight into columns (the stored schema is `polyledger/bars.py`).

polars reads the page with an explicit schema (no per-bar Python objects, GIL released);
anything that is not the documented shape is a transient `bad_shape` error, never an
empty result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import orjson
import polars as pl

from polyledger.errors import TransientError, one_line

RAW_BAR = pl.Struct(
    {
        "t": pl.Int64,
        "o": pl.Float64,
        "h": pl.Float64,
        "l": pl.Float64,
        "c": pl.Float64,
        "v": pl.Float64,
        "vw": pl.Float64,
        "n": pl.Int64,
        "otc": pl.Boolean,
    }
)
PAGE_SCHEMA = {
    "status": pl.String,
    "request_id": pl.String,
    "ticker": pl.String,
    "adjusted": pl.Boolean,
    "resultsCount": pl.Int64,
    "next_url": pl.String,
    "results": pl.List(RAW_BAR),
}
REQUIRED = ("t", "o", "h", "l", "c", "v")
SUCCESS_STATUSES = ("OK", "DELAYED")


@dataclass(frozen=True)
class AggregatesPage:
    bars: pl.DataFrame  # raw columns t o h l c v vw n otc, as sent
    next_url: str | None
    request_id: str | None
    adjusted: bool | None


def decode_aggregates(body: bytes) -> AggregatesPage:
    """Parse one aggregates response body; raises TransientError(bad_shape/invalid_json).

    The `results` array is cut out of the body and read by polars on its own (as
    newline-delimited JSON when the body is compact, as the API sends it): about 4x faster
    than reading the envelope with its nested list. Anything unusual takes the general
    path below, which also names what is wrong. Either way a page's `resultsCount` must
    be the number of bars it holds."""
    page = _decode_fast(body)
    return page if page is not None else _decode_general(body)


_RESULTS_KEY = b'"results":'
# put where the cut array was: the envelope is then read with it, and only when its own
# top-level `results` is this value was the array cut the top-level one (not a `results`
# inside another field, nor a key merely ending in it)
_CUT_TEXT = "polyledger:cut-results"
_CUT = orjson.dumps(_CUT_TEXT)
_BAR_SCHEMA = dict(RAW_BAR.to_schema())


def _decode_fast(body: bytes) -> AggregatesPage | None:
    try:
        key = body.find(_RESULTS_KEY)
        if key < 0:
            return None
        start = key + len(_RESULTS_KEY)
        while body[start : start + 1] in (b" ", b"\n", b"\r", b"\t"):
            start += 1
        if body[start : start + 1] != b"[":
            return None
        end = body.index(b"]", start)  # bars hold numbers and booleans only: no "]" inside
        head, tail = body[:start], body[end + 1 :]
        if _CUT in head or _CUT in tail:  # only the envelope is read with it (not the array)
            return None
        envelope = orjson.loads(head + _CUT + tail)
        if not isinstance(envelope, dict) or envelope.get("results") != _CUT_TEXT:
            return None  # not the top-level array: only a full parse can tell which it is
        if envelope.get("status") not in SUCCESS_STATUSES:
            return None
        array = body[start + 1 : end]
        if not array or array.isspace():  # (strip() would copy the whole array)
            return None  # empty: the general path applies the resultsCount check
        if b"\n" in array:
            bars = pl.read_json(io.BytesIO(body[start : end + 1]), schema=_BAR_SCHEMA)
        else:
            bars = pl.read_ndjson(io.BytesIO(array.replace(b"},{", b"}\n{")), schema=_BAR_SCHEMA)
        if any(bars.get_column(name).null_count() for name in REQUIRED):
            return None
        count = envelope.get("resultsCount")
        if count is not None and count != bars.height:
            return None  # the general path says what is wrong
        next_url = envelope.get("next_url")
        adjusted = envelope.get("adjusted")
        return AggregatesPage(
            bars=bars,
            next_url=next_url if isinstance(next_url, str) and next_url else None,
            request_id=str(envelope["request_id"]) if envelope.get("request_id") is not None else None,
            adjusted=adjusted if isinstance(adjusted, bool) else None,
        )
    except Exception:  # anything odd: let the general path decide and explain
        return None


def _decode_general(body: bytes) -> AggregatesPage:
    try:
        frame = pl.read_json(io.BytesIO(body), schema=PAGE_SCHEMA)
    except Exception as exc:  # polars raises ComputeError and friends for any malformed input
        detail = one_line(exc, limit=None)
        kind = "bad_shape" if "deserializing" in detail else "invalid_json"
        raise TransientError(f"undecodable aggregates body: {detail[:100]}", error_class=kind) from None
    if frame.height != 1:
        raise TransientError("aggregates body is not one JSON object", error_class="bad_shape")
    envelope = frame.row(0, named=True)
    status = envelope["status"]
    if status not in SUCCESS_STATUSES:
        raise TransientError(f"aggregates body has status {status!r}", error_class="bad_shape")
    results = frame.get_column("results")
    if results.null_count() or results.list.len()[0] == 0:
        if envelope["resultsCount"]:
            # says there are bars but sent none: never let that pass as an empty month
            raise TransientError("resultsCount > 0 but no results", error_class="bad_shape")
        bars = pl.DataFrame(schema=dict(RAW_BAR.to_schema()))
    else:
        bars = frame.select(pl.col("results").explode()).unnest("results")
        missing = [name for name in REQUIRED if bars.get_column(name).null_count()]
        if missing:
            raise TransientError(f"bars without {', '.join(missing)}", error_class="bad_shape")
    count = envelope["resultsCount"]
    if count is not None and count != bars.height:
        # a page cut short, or padded: never store it as the whole answer
        raise TransientError(f"resultsCount {count} but {bars.height} bars", error_class="bad_shape")
    return AggregatesPage(
        bars=bars,
        next_url=envelope["next_url"] or None,
        request_id=envelope["request_id"],
        adjusted=envelope["adjusted"],
    )

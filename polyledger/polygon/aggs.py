"""Decoding an aggregates page straight into columns (the stored schema is `polyledger/bars.py`).

polars reads the page with an explicit schema (no per-bar Python objects, GIL released);
anything that is not the documented shape is a transient `bad_shape` error, never an
empty result.
"""

from __future__ import annotations

import io
import json
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
    ticker: str | None = None  # whose bars the answer says they are (None: it does not say)


def decode_aggregates(body: bytes) -> AggregatesPage:
    """Parse one aggregates response body; raises TransientError(bad_shape/invalid_json).

    The `results` array is cut out of the body and read by polars on its own: as CSV when
    the body is compact and every bar has the first bar's keys in its order (the API's own
    pages, `_read_uniform`), else as JSON once its values are checked (`misshapen_bars`:
    polars' JSON readers coerce to a schema); about 4x faster than reading the envelope with
    its nested list. Anything unusual takes the general path below, which also names what
    is wrong. Either way a page's `resultsCount` must be the number of bars it holds, and
    `adjusted`, when sent, a boolean.

    A run decodes inside the client's gate (`PolygonClient.get`: one body inflated and
    decoded per core at a time): a decode holds several times its page in passing."""
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
        envelope_text = head + _CUT + tail
        envelope = orjson.loads(envelope_text)
        if not isinstance(envelope, dict) or envelope.get("results") != _CUT_TEXT:
            return None  # not the top-level array: only a full parse can tell which it is
        if misshapen_bars(envelope_text):
            return None  # a key given twice (orjson keeps the last): the general path refuses it
        if envelope.get("status") not in SUCCESS_STATUSES:
            return None
        # the array is searched in place, not copied (a page holds several MiB of it)
        if body.find(b"{", start + 1, end) < 0:
            return None  # no bar (empty, blank): the general path applies the resultsCount check
        uniform = None if body.find(b"\n", start + 1, end) >= 0 else _read_uniform(body, start + 1, end)
        if uniform is not None:
            bars = uniform
        else:  # laid out or of several shapes: polars' JSON readers take a schema by coercing
            if misshapen_bars(body[start : end + 1]):
                return None  # the general path says what is wrong
            bars = pl.read_json(io.BytesIO(body[start : end + 1]), schema=_BAR_SCHEMA)
        if any(bars.get_column(name).null_count() for name in REQUIRED):
            return None
        count = envelope.get("resultsCount")
        if count is not None and count != bars.height:
            return None  # the general path says what is wrong
        next_url = envelope.get("next_url")
        adjusted = envelope.get("adjusted")
        ticker = envelope.get("ticker")
        if "adjusted" in envelope and not isinstance(adjusted, bool):
            return None  # the general path says what is wrong
        if next_url is not None and not isinstance(next_url, str):
            return None  # more pages said some other way: never taken for the last page
        return AggregatesPage(
            bars=bars,
            next_url=next_url if isinstance(next_url, str) and next_url else None,
            request_id=str(envelope["request_id"]) if envelope.get("request_id") is not None else None,
            adjusted=adjusted,
            ticker=ticker if isinstance(ticker, str) else None,
        )
    except Exception:  # anything odd: let the general path decide and explain
        return None


# a compact array of flat bars as CSV: `{` dropped, `}` ends a line, `:` separates like `,`
_TO_CSV = bytes.maketrans(b"}:", b"\n,")
_FLOATS = [name for name, dtype in _BAR_SCHEMA.items() if dtype == pl.Float64]


def _read_uniform(body: bytes, start: int = 0, end: int | None = None) -> pl.DataFrame | None:
    """The bars of a compact `results` array (`body[start:end]`, inside its brackets: no
    whitespace, no newline) when every bar has
    the first bar's keys in its order, `otc` allowed to close any of them (the API sends it
    only when true); None when they do not, or the array is anything else.

    Each bar becomes a CSV line `,"k1",v1,"k2",v2,...` and polars reads keys and values
    as columns, with no quote character: a key is accepted only as it is written in the
    first bar, quotes included, and a value must parse as its column's type as it stands
    (a quoted string is no number). About 0.3 CPU s per million bars less than reading the
    same bars as newline-delimited JSON, where each bar's keys are looked up one by one.

    Lenient where the meaning is not in doubt, by design: text no JSON reader takes but
    whose every bar still reads as its keys and values, in order (`+1`, `.5`, `01`, `True`,
    a `:` or no `,` between two bars, a `,` for a `:`) is read as it says. Proving the
    array JSON costs what this read saves (a whole parse 1.2 CPU s per million bars, the
    separators counted 0.25: bench/RESULTS.md 2026-12-02); a page is gzip-checked on the
    way, and a value that does not parse as its column's type is refused."""
    end = len(body) if end is None else end
    first_end = body.find(b"}", start, end)
    try:
        first = orjson.loads(body[start : first_end + 1]) if first_end > start else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(first, dict) or not first:
        return None
    keys = list(first)
    if any(key not in _BAR_SCHEMA for key in keys):
        return None
    fixed = [key for key in keys if key != "otc"]  # every bar has these, in this order
    names = ["_"] + [name for key in [*fixed, "otc"] for name in (f"key_{key}", key)]
    schema = {"_": pl.String}
    for key in [*fixed, "otc"]:
        schema[f"key_{key}"], schema[key] = pl.String, _BAR_SCHEMA[key]
    # the header line has none of the translated bytes: one copy of the array, translated
    text = b"".join((",".join(names).encode(), b"\n,", memoryview(body)[start:end])).translate(_TO_CSV, b"{")
    try:
        frame = pl.read_csv(text, has_header=True, schema=schema, quote_char=None)
    except pl.exceptions.PolarsError:  # a bar with more fields, a value not of its type, ...
        return None
    conditions = [pl.col("_").is_null()]  # nothing between one bar and the next
    for key in fixed:
        conditions.append((pl.col(f"key_{key}") == f'"{key}"').fill_null(False))
        conditions.append(pl.col(key).is_finite() if key in _FLOATS else pl.col(key).is_not_null())
    otc_key = pl.col("key_otc")
    conditions.append(
        (otc_key.is_null() & pl.col("otc").is_null())
        | ((otc_key == '"otc"').fill_null(False) & pl.col("otc").is_not_null())
    )
    if not frame.select(pl.all_horizontal(conditions).fill_null(False).all()).item():
        return None
    return frame.select(
        pl.col(key) if key in schema else pl.lit(None, dtype=dtype).alias(key)
        for key, dtype in _BAR_SCHEMA.items()
    )


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def misshapen_bars(array: bytes) -> str | None:
    """What is wrong with a `results` array's values (or a body's), None when nothing: checked before
    polars' JSON readers, which take a schema by coercing (a fraction read as the integer
    below it, `true` as 1.0, the first of a key given twice where JSON means the last)."""

    def bar(pairs: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("a bar gives a key twice")
        for key, value in pairs:
            kind = _BAR_SCHEMA.get(key)
            if value is None or kind is None:
                continue  # nulls and unknown keys: as the readers and the checks after them take them
            if kind == pl.Boolean:
                fits = isinstance(value, bool)
            elif kind == pl.Int64:
                # beyond int64 the readers make it null: "not sent", where the JSON sent one
                integer = isinstance(value, int) and not isinstance(value, bool)
                fits = integer and _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
            else:
                fits = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not fits:
                raise ValueError(f"a bar's {key} is {value!r}")
        return dict(pairs)

    try:
        json.loads(array, object_pairs_hook=bar)
    except ValueError as exc:  # json.JSONDecodeError is one
        return str(exc)
    return None


def _decode_general(body: bytes) -> AggregatesPage:
    try:
        frame = pl.read_json(io.BytesIO(body), schema=PAGE_SCHEMA)
    except Exception as exc:  # polars raises ComputeError and friends for any malformed input
        detail = one_line(exc, limit=None)
        kind = "bad_shape" if "deserializing" in detail else "invalid_json"
        raise TransientError(f"undecodable aggregates body: {detail[:100]}", error_class=kind) from None
    problem = misshapen_bars(body)  # the envelope's keys are no bar's: only repeats count there
    if problem:
        raise TransientError(f"aggregates body: {problem}", error_class="bad_shape")
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
        ticker=envelope["ticker"],
    )

"""Bars as we store them: the schema of every bar file, and the shaping of decoded pages
into one unit's bars (converted, cut by US/Eastern session date, each timestamp once).

Input is the raw page columns `t o h l c v vw n otc` as `polygon/aggs.py` decodes them;
storage writes whatever frame it is given, so neither of them owns this.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from polyledger.listings import Listing, Unattributed, attribute, constant_security_id
from polyledger.periods import ET, et_midnight_ms

# the columns of every stored bar file, in order
BAR_SCHEMA = {
    "ticker": pl.String,  # the symbol as it traded (case-sensitive)
    "security_id": pl.String,  # the security across symbols; null: inside no known listing
    "timestamp": pl.Datetime("ms", "UTC"),
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
    "vwap": pl.Float64,
    "transactions": pl.Int64,
    "otc": pl.Boolean,
}
# the API's short column names -> the stored ones
RENAME = {
    "t": "timestamp",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vw": "vwap",
    "n": "transactions",
}


def to_stored_bars(raw: pl.DataFrame, ticker: str) -> pl.DataFrame:
    """Raw page columns -> the stored schema (UTC ms timestamps, float64 volume, `otc`
    false where the API left it out: it sends it only when true, and `~pl.col("otc")`
    must select the regular bars, which a null would drop)."""
    return raw.rename(RENAME).select(
        pl.lit(ticker, dtype=pl.String).alias("ticker"),
        pl.col("timestamp").cast(pl.Datetime("ms", "UTC")),
        *[
            pl.col(name).cast(dtype).fill_null(False) if name == "otc" else pl.col(name).cast(dtype)
            for name, dtype in BAR_SCHEMA.items()
            if name not in ("ticker", "security_id", "timestamp")
        ],
    )


def bars_for_unit(
    raw: pl.DataFrame, ticker: str, start: dt.date, end: dt.date, listings: Sequence[Listing] = ()
) -> pl.DataFrame:
    """The unit's bars: those whose US/Eastern session date is in [start, end], each
    timestamp once (first seen wins), sorted by time, in the stored schema."""
    return split_by_unit(raw, ticker, [(start, end)], listings)[0].bars


@dataclass(frozen=True)
class UnitBars:
    """One unit's share of an answer: its bars, the repeats dropped, and the bars that
    fell inside no known listing of the symbol (kept, with a null security_id)."""

    bars: pl.DataFrame
    duplicates: int = 0
    unattributed: Unattributed | None = None


def split_by_unit(
    raw: pl.DataFrame,
    ticker: str,
    periods: Sequence[tuple[dt.date, dt.date]],
    listings: Sequence[Listing] = (),
) -> list[UnitBars]:
    """`bars_for_unit` for several units at once, with how many repeated timestamps each
    unit's bars had (dropped; the first is kept) and which bars no listing of `ticker`
    explains. The raw bars are converted once and sorted only if they are not already
    (pages arrive in time order), then each unit is a slice between the epoch-ms bounds of
    its first and last session (a session date is [ET midnight, next ET midnight)): no
    per-bar time-zone conversion, nor per-bar dates unless a listing window cuts through
    the unit. Sorted, a timestamp's repeats are neighbours: the first of each run is kept."""
    if raw.height == 0:
        return [UnitBars(pl.DataFrame(schema=BAR_SCHEMA)) for _ in periods]
    bars = to_stored_bars(raw, ticker)
    if not bars.get_column("timestamp").is_sorted():
        bars = bars.sort("timestamp", maintain_order=True)  # stable: first seen first
    times = bars.get_column("timestamp").dt.epoch("ms")
    bounds = pl.Series([et_midnight_ms(start) for start, _ in periods], dtype=pl.Int64)
    firsts = times.search_sorted(bounds, side="left")
    ends = pl.Series([et_midnight_ms(end + dt.timedelta(days=1)) for _, end in periods], dtype=pl.Int64)
    lasts = times.search_sorted(ends, side="left")
    same_id = constant_security_id(ticker, listings)
    out = []
    for first, last in zip(firsts, lasts, strict=True):
        length = max(last - first, 0)
        unit = bars.slice(first, length)
        repeated = times.slice(first, length).diff() == 0  # null (kept) for the first bar
        duplicates = int(repeated.sum())
        if duplicates:
            unit = unit.filter(~repeated.fill_null(False))
        if same_id is not None:
            attributed, unattributed = unit.with_columns(security_id=same_id), None
        else:
            dates = unit.get_column("timestamp").dt.convert_time_zone(str(ET)).dt.date()
            attributed, unattributed = attribute(unit, dates, ticker, listings)
        out.append(UnitBars(attributed.select(list(BAR_SCHEMA)), duplicates, unattributed))
    return out


def bars_outside(raw: pl.DataFrame, start: dt.date, end: dt.date) -> int:
    """How many raw bars fall outside the US/Eastern dates [start, end] that were asked for
    (compared in epoch ms with the first session's midnight and the one after the last:
    no per-bar time-zone conversion)."""
    if raw.height == 0:
        return 0
    times = raw.get_column("t")
    after = et_midnight_ms(end + dt.timedelta(days=1))
    return int(((times < et_midnight_ms(start)) | (times >= after)).sum())


def symbol_bars(raw: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Bars of many symbols (a `T` column naming each bar's ticker, as grouped daily sends
    them) -> the stored schema, one bar per ticker and timestamp (first seen wins), sorted
    by ticker and time; and how many repeats were dropped."""
    if raw.height == 0:
        return pl.DataFrame(schema=BAR_SCHEMA), 0
    # a market-wide cross-check: its bars are not attributed to listings (null security_id)
    bars = (
        to_stored_bars(raw.drop("T"), "")
        .with_columns(raw.get_column("T").alias("ticker"), pl.lit(None, dtype=pl.String).alias("security_id"))
        .select(list(BAR_SCHEMA))
    )
    unique = bars.unique(subset=["ticker", "timestamp"], keep="first", maintain_order=True)
    return unique.sort("ticker", "timestamp", maintain_order=True), bars.height - unique.height


def session_dates(raw: pl.DataFrame) -> pl.Series:
    """The US/Eastern session date of every raw bar (`t` in epoch ms)."""
    instants = pl.from_epoch(raw.get_column("t"), time_unit="ms").dt.replace_time_zone("UTC")
    return instants.dt.convert_time_zone(str(ET)).dt.date()

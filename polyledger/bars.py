"""Bars as we store them: the schema of every bar file, and the shaping of decoded pages
into one unit's bars (converted, cut by US/Eastern session date, each timestamp once).

Input is the raw page columns `t o h l c v vw n otc` as `polygon/aggs.py` decodes them;
storage writes whatever frame it is given, so neither of them owns this.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


# the stored columns -> the API's short names (`otc` is both)
RAW_NAME = {**{stored: raw for raw, stored in RENAME.items()}, "otc": "otc"}


def to_stored_bars(raw: pl.DataFrame, ticker: str) -> pl.DataFrame:
    """Raw page columns -> the stored schema but `security_id` (UTC ms timestamps, float64
    volume, `otc` false where the API left it out: it sends it only when true, and
    `~pl.col("otc")` must select the regular bars, which a null would drop).

    Built column by column with Series operations, as is the rest of a unit's shaping: a
    polars query (select, with_columns, filter, even Series.diff) costs 0.3-0.5 ms whatever
    its size, and a unit is shaped hundreds of thousands of times in a full download."""
    height = raw.height
    columns = [constant_column("ticker", ticker, height)]
    for name, dtype in BAR_SCHEMA.items():
        if name in ("ticker", "security_id"):
            continue
        column = raw.get_column(RAW_NAME[name]).cast(dtype).alias(name)
        columns.append(_false_where_null(column) if name == "otc" else column)
    return pl.DataFrame(columns)


def constant_column(name: str, value: str, height: int) -> pl.Series:
    """A String column of `height` times `value` (no query, no list of `height` strings)."""
    return pl.Series(name, [value], dtype=pl.String).new_from_index(0, height)


def _false_where_null(flags: pl.Series) -> pl.Series:
    nulls = flags.null_count()
    if nulls == 0:
        return flags
    if nulls == flags.len():  # a page without any `otc` (the usual case): no query
        return pl.Series(flags.name, [False], dtype=pl.Boolean).new_from_index(0, flags.len())
    return flags.fill_null(False)


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
    times = bars.get_column("timestamp").to_physical().to_numpy()  # epoch ms, no copy
    firsts = np.searchsorted(times, [et_midnight_ms(start) for start, _ in periods], side="left")
    lasts = np.searchsorted(
        times, [et_midnight_ms(end + dt.timedelta(days=1)) for _, end in periods], side="left"
    )
    same_id = constant_security_id(ticker, listings)
    out = []
    for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
        length = max(last - first, 0)
        unit = bars.slice(first, length)
        unit_times = times[first : first + length]
        repeated = unit_times[1:] == unit_times[:-1]  # a bar at its predecessor's time
        duplicates = int(repeated.sum())
        if duplicates:
            unit = unit.filter(pl.Series(np.concatenate(([True], ~repeated))))
        if same_id is not None:
            attributed, unattributed = unit.clone(), None
            attributed.insert_column(1, constant_column("security_id", same_id, unit.height))
        else:
            dates = unit.get_column("timestamp").dt.convert_time_zone(str(ET)).dt.date()
            attributed, unattributed = attribute(unit, dates, ticker, listings)
        if attributed.columns != list(BAR_SCHEMA):
            attributed = attributed.select(list(BAR_SCHEMA))
        out.append(UnitBars(attributed, duplicates, unattributed))
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

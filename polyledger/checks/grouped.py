"""Grouped daily bars against the per-ticker daily bars (`audit --quality`): the same
trading day's bar, fetched two ways, must agree.

For every (ticker, session) where both are stored: open, high, low, close and volume
within GROUPED_TOLERANCE of each other (`grouped_mismatch`). A symbol in a settled day
unit's bars but absent from that date's grouped bars (`missing_in_grouped`), and a
symbol in the grouped bars but absent from a settled day unit that covers the date
(`missing_in_day`). Tickers without day units, and dates without a settled grouped unit,
are not compared: absence there says nothing; nor is a day bar traded over the counter
(`otc`): grouped daily leaves OTC securities out unless asked to include them.

Read a year at a time: that year's grouped files (every symbol, ~250 days) and the day
files of the same year (one per ticker).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import polars as pl

from polyledger.checks.quality import REFERENCE_BARS as REFERENCE
from polyledger.checks.quality import quality_flag as _flag
from polyledger.errors import one_line
from polyledger.ledger import Ledger, UnitState, queries
from polyledger.periods import ET
from polyledger.storage import BarStore

# Both are the same day's aggregate from the same trades, so they should agree to the
# price grid; 0.1% relative leaves room for float noise and adjusted-price rounding while
# a changed close or a lost block of volume still shows.
GROUPED_TOLERANCE = 1e-3
FIELDS = ("open", "high", "low", "close", "volume")
_KEY = ("ticker", "session")


def cross_check(ledger: Ledger, store: BarStore, dataset: str, market: str) -> tuple[list[dict], int, int]:
    """(flags, files read, bars read) of the grouped dataset against the day bars."""
    flags: list[dict] = []
    files = bars = 0
    grouped_units = queries.settled_units(ledger, dataset, market)
    for year, units in _by_year(grouped_units):
        dates = {dt.date.fromisoformat(u.period_start): u for u in units}
        grouped, unreadable = _read(store, [u for u in units if u.state == UnitState.DONE], dataset)
        flags += unreadable
        first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
        day_units = queries.settled_units_between(ledger, REFERENCE, first, last)
        # an unreadable day file is the day scan's finding, not this one's
        day, _unreadable = _read(store, [u for u in day_units if u.state == UnitState.DONE], REFERENCE)
        files += sum(1 for u in units if u.file_path) + sum(1 for u in day_units if u.file_path)
        bars += grouped.height + day.height
        day = day.filter(pl.col("session").is_in(list(dates)))
        flags += _compare(dataset, grouped, day, dates, day_units)
    return flags, files, bars


def _by_year(units: Sequence) -> Iterator[tuple[int, list]]:
    year, batch = None, []
    for unit in units:
        this = int(unit.period_start[:4])
        if batch and this != year:
            yield year, batch  # type: ignore[misc]
            batch = []
        year = this
        batch.append(unit)
    if batch:
        yield year, batch  # type: ignore[misc]


def _read(store: BarStore, units: Sequence, dataset: str) -> tuple[pl.DataFrame, list[dict]]:
    """The units' bars keyed by (ticker, session), each with its unit id; flags for files
    that cannot be read."""
    frames, flags = [], []
    for unit in units:
        try:
            frame = store.read_parquet(unit.file_path, hive_partitioning=False)
        except (OSError, pl.exceptions.PolarsError) as exc:
            detail = f"{unit.file_path} cannot be read: {one_line(exc)}; see audit --deep and repair"
            flags.append(_flag(dataset, unit.ticker, None, "unreadable_file", unit.id, detail, None))
            continue
        frames.append(
            frame.select(
                "ticker",
                session=pl.col("timestamp").dt.convert_time_zone(str(ET)).dt.date(),
                **{name: pl.col(name).cast(pl.Float64) for name in FIELDS},
                otc=pl.col("otc").fill_null(False) if "otc" in frame.columns else pl.lit(False),
                unit_id=pl.lit(unit.id, dtype=pl.Int64),
            )
        )
    if not frames:
        schema = {"ticker": pl.String, "session": pl.Date, **dict.fromkeys(FIELDS, pl.Float64)}
        return pl.DataFrame(schema={**schema, "otc": pl.Boolean, "unit_id": pl.Int64}), flags
    return pl.concat(frames), flags


def _compare(
    dataset: str, grouped: pl.DataFrame, day: pl.DataFrame, dates: dict[dt.date, object], day_units: list
) -> list[dict]:
    both = grouped.join(day, on=_KEY, suffix="_day")
    off = pl.max_horizontal(
        *[
            (
                (pl.col(f) - pl.col(f"{f}_day")).abs()
                / pl.max_horizontal(pl.col(f"{f}_day").abs(), pl.lit(1e-9))
            )
            for f in FIELDS
        ]
    )
    flags = [
        _flag(
            dataset,
            row["ticker"],
            row["session"],
            "grouped_mismatch",
            row["unit_id"],
            "grouped bar differs from the day bar: "
            + ", ".join(
                f"{f} {row[f]:g} vs {row[f + '_day']:g}"
                for f in FIELDS
                if abs(row[f] - row[f + "_day"]) > GROUPED_TOLERANCE * max(abs(row[f + "_day"]), 1e-9)
            )
            + f" (tolerance {GROUPED_TOLERANCE:.2%})",
            row["off"],
        )
        for row in both.with_columns(off=off).filter(pl.col("off") > GROUPED_TOLERANCE).iter_rows(named=True)
    ]
    settled_dates = {day_: unit for day_, unit in dates.items()}
    # grouped daily is asked without include_otc (the API's default: OTC securities left
    # out), so a session a symbol traded over the counter is in its day bars only
    listed = day.filter(~pl.col("otc"))
    for row in listed.join(grouped, on=_KEY, how="anti").iter_rows(named=True):
        unit = settled_dates[row["session"]]
        detail = (
            f"the day bar has {row['volume']:,.0f} shares but the grouped bars of {row['session']} "
            f"have no {row['ticker']} (grouped unit is {unit.state})"  # type: ignore[attr-defined]
        )
        flags.append(
            _flag(
                dataset, row["ticker"], row["session"], "missing_in_grouped", unit.id, detail, row["volume"]
            )  # type: ignore[attr-defined]
        )
    covering = _covering(day_units)
    extra = (
        grouped.join(day, on=_KEY, how="anti")
        .join(covering, on="ticker")
        .filter(pl.col("session").is_between(pl.col("period_start"), pl.col("period_end")))
    )
    flags += [
        _flag(
            dataset,
            row["ticker"],
            row["session"],
            "missing_in_day",
            row["day_unit"],
            f"the grouped bars have {row['volume']:,.0f} shares of {row['ticker']} but its day unit "
            f"{row['period_start'].year} ({row['state']}) has no bar that day",
            row["volume"],
        )
        for row in extra.iter_rows(named=True)
    ]
    return flags


def _covering(day_units: list) -> pl.DataFrame:
    """(ticker, period_start, period_end, day_unit, state) of the settled day units."""
    return pl.DataFrame(
        {
            "ticker": [u.ticker for u in day_units],
            "period_start": [dt.date.fromisoformat(u.period_start) for u in day_units],
            "period_end": [dt.date.fromisoformat(u.period_end) for u in day_units],
            "day_unit": [u.id for u in day_units],
            "state": [u.state for u in day_units],
        },
        schema={
            "ticker": pl.String,
            "period_start": pl.Date,
            "period_end": pl.Date,
            "day_unit": pl.Int64,
            "state": pl.String,
        },
    )

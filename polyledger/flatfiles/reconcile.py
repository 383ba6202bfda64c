"""Reconciling the two routes: a sample of ticker units' stored bars against the same
unit fetched the other way, bar for bar (vwap and otc aside: flat files have neither).

A unit filled from flat files is compared with the API's answer (a client is needed); a
unit filled from the API with the bars rebuilt from its staged days, when they are all
staged. Only the sessions both routes can have are compared: those with a day file.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from polyledger.bars import BAR_SCHEMA, split_by_unit
from polyledger.datasets.flat_days import ROUTES
from polyledger.flatfiles.transpose import SETTLED, to_raw
from polyledger.ledger import Ledger
from polyledger.periods import ET
from polyledger.storage import BarStore
from polyledger.trading_days import trading_days

COMPARED = ["ticker", "timestamp", "open", "high", "low", "close", "volume", "transactions"]


@dataclass(frozen=True)
class Reconciled:
    dataset: str
    ticker: str
    period: str
    source: str  # the stored unit's
    bars: int  # compared sessions' bars of the stored unit
    only_stored: int  # bars the other route lacks
    only_other: int  # bars the stored unit lacks
    different: int  # same timestamp, another value

    @property
    def same(self) -> bool:
        return not (self.only_stored or self.only_other or self.different)


def compare_bars(stored: pl.DataFrame, other: pl.DataFrame) -> tuple[int, int, int]:
    """(bars only in `stored`, only in `other`, at one timestamp with another value)."""
    left, right = stored.select(COMPARED), other.select(COMPARED)
    keys = ["ticker", "timestamp"]
    joined = left.join(right, on=keys, how="inner", suffix="_other")
    different = joined.filter(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_other")) for c in COMPARED if c not in keys])
    ).height
    return left.height - joined.height, right.height - joined.height, different


def rebuild_from_staged(
    ledger: Ledger, store: BarStore, dataset: str, ticker: str, start: dt.date, end: dt.date
) -> pl.DataFrame | None:
    """The unit's bars from its staged days (None unless every trading day is read)."""
    days = ledger.flat_days(ROUTES[dataset], start, end)
    if len(days) != len(trading_days(start, end)) or any(row.state not in SETTLED for row in days):
        return None
    files = [row.file_path for row in days if row.file_path]
    staged = (
        store.scan_parquet(files).filter(pl.col("ticker") == ticker).collect()
        if files
        else pl.DataFrame(schema=BAR_SCHEMA)
    )
    return split_by_unit(to_raw(staged), ticker, [(start, end)], ledger.listings_of(ticker))[0].bars


def fetch_rest(client: Any, dataset: str, ticker: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The unit's raw bars from the API (unadjusted: flat files never are)."""
    from polyledger.polygon.fetch import FetchCost, iter_pages

    timespan = "minute" if dataset == "minute" else "day"
    pages = list(iter_pages(client, ticker, timespan, start, end, False, FetchCost()))
    raw = pl.concat(pages) if pages else pl.DataFrame()
    return split_by_unit(raw, ticker, [(start, end)])[0].bars


def _on_trading_days(bars: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    dates = bars.get_column("timestamp").dt.convert_time_zone(str(ET)).dt.date()
    return bars.filter(dates.is_in(trading_days(start, end)))


def reconcile(
    ledger: Ledger,
    store: BarStore,
    sample: int,
    *,
    client: Any = None,
    datasets: Sequence[str] = tuple(ROUTES),
    seed: int = 0,
) -> list[Reconciled]:
    """Up to `sample` done ticker units (chosen at random, `seed`) compared with the other
    route; units that cannot be (no client for a flat-file unit, days not all staged for a
    REST unit) are skipped."""
    units = [row for dataset in datasets for row in ledger.done_units_with_source(dataset)]
    random.Random(seed).shuffle(units)
    found: list[Reconciled] = []
    for row in units:
        if len(found) >= sample:
            break
        start, end = (
            dt.date.fromisoformat(str(row.period_start)[:10]),
            dt.date.fromisoformat(str(row.period_end)[:10]),
        )
        if row.source == "flatfiles":
            if client is None:
                continue
            other = fetch_rest(client, row.dataset, row.ticker, start, end)
        else:
            rebuilt = rebuild_from_staged(ledger, store, row.dataset, row.ticker, start, end)
            if rebuilt is None:
                continue
            other = rebuilt
        stored = _on_trading_days(store.read_parquet(row.file_path), start, end)
        only_stored, only_other, different = compare_bars(stored, _on_trading_days(other, start, end))
        found.append(
            Reconciled(
                row.dataset,
                row.ticker,
                row.period,
                row.source or "rest",
                stored.height,
                only_stored,
                only_other,
                different,
            )
        )
    return found

"""Reconciling the two routes: a sample of ticker units' stored bars against the same
unit fetched the other way, bar for bar (vwap and otc aside: flat files have neither).

A unit filled from flat files is compared with the API's answer (a client is needed); a
unit filled from the API with the bars rebuilt from its days once they are all read: from
their staged files, and a day whose staged file was deleted (`prune`) read from the bucket
again (flat-file keys needed; a month is some 21 objects). Only the sessions both routes
can have are compared: those with a day file.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from polyledger.bars import BAR_SCHEMA, split_by_unit
from polyledger.datasets.flat_days import ROUTES, object_key
from polyledger.flatfiles.job import period_of, universe_hash
from polyledger.flatfiles.source import FlatFilesSource
from polyledger.flatfiles.stage import read_day
from polyledger.flatfiles.transpose import SETTLED, to_raw
from polyledger.ledger import Ledger
from polyledger.periods import ET, stored_date
from polyledger.storage import BarStore
from polyledger.trading_days import trading_days

COMPARED = ["ticker", "timestamp", "open", "high", "low", "close", "volume", "transactions"]
# why a unit could not be compared, said with the count so that none compared is never read
# as all matched
NO_API_KEY = "no_api_key"
DAYS_UNREAD = "days_unread"
NO_FLATFILE_KEYS = "no_flatfile_keys"
SKIPPED = {
    NO_API_KEY: "filled from flat files, no API key to ask",
    DAYS_UNREAD: "filled from the API, their days not all read from flat files",
    NO_FLATFILE_KEYS: "filled from the API, their staged days deleted and no flat-file keys",
}


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


@dataclass
class Reconciliation:
    """The units compared, and how many units tried could not be, by reason (SKIPPED)."""

    compared: list[Reconciled] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def compare_bars(stored: pl.DataFrame, other: pl.DataFrame) -> tuple[int, int, int]:
    """(bars only in `stored`, only in `other`, at one timestamp with another value)."""
    left, right = stored.select(COMPARED), other.select(COMPARED)
    keys = ["ticker", "timestamp"]
    joined = left.join(right, on=keys, how="inner", suffix="_other")
    different = joined.filter(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_other")) for c in COMPARED if c not in keys])
    ).height
    return left.height - joined.height, right.height - joined.height, different


def rebuild_from_flat_files(
    ledger: Ledger,
    store: BarStore,
    dataset: str,
    ticker: str,
    start: dt.date,
    end: dt.date,
    source: FlatFilesSource | None = None,
) -> pl.DataFrame | str:
    """The unit's bars from its days, or why they cannot be rebuilt: DAYS_UNREAD unless
    every trading day is read, NO_FLATFILE_KEYS for a day whose staged file was deleted or
    that was read for other tickers when no `source` can read it again."""
    day_dataset = ROUTES[dataset]
    days = ledger.flat_days(day_dataset, start, end)
    if len(days) != len(trading_days(start, end)) or any(row.state not in SETTLED for row in days):
        return DAYS_UNREAD
    # what the unit's period holds now: a day staged (or found empty) for other tickers may
    # lack this one (planned since, filled from the API), so it is read from the bucket again
    staged_for = universe_hash(ledger.tickers_by_period(dataset).get(period_of(dataset, start), ()))
    again = [row for row in days if (row.state == "done" and not row.file_path) or row.universe != staged_for]
    if again and source is None:
        return NO_FLATFILE_KEYS  # never as if those days had no bars
    files = [row.file_path for row in days if row.file_path and row not in again]
    parts = [store.scan_parquet(files).filter(pl.col("ticker") == ticker).collect()] if files else []
    for row in again:
        day = stored_date(row.period_start)
        with tempfile.TemporaryDirectory(prefix="polyledger-reconcile-") as folder:
            path = Path(folder) / "day.csv"
            source.fetch_day(object_key(day_dataset, day), path)  # type: ignore[union-attr]
            parts.append(read_day(path, frozenset({ticker}), day)[0])
    staged = (
        pl.concat(parts).sort("timestamp", maintain_order=True) if parts else pl.DataFrame(schema=BAR_SCHEMA)
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
    source: FlatFilesSource | None = None,
    datasets: Sequence[str] = tuple(ROUTES),
    seed: int = 0,
) -> Reconciliation:
    """Up to `sample` done ticker units (chosen at random, `seed`) compared with the other
    route; units that cannot be (no client for a flat-file unit; for a REST unit, days not
    all read, or deleted when staged and no `source` to read them again) are skipped and
    counted by reason."""
    units = [row for dataset in datasets for row in ledger.done_units_with_source(dataset)]
    random.Random(seed).shuffle(units)
    result = Reconciliation()
    found = result.compared
    for row in units:
        if len(found) >= sample:
            break
        start, end = (
            stored_date(row.period_start),
            stored_date(row.period_end),
        )
        if row.source == "flatfiles":
            if client is None:
                result.skipped[NO_API_KEY] += 1
                continue
            other = fetch_rest(client, row.dataset, row.ticker, start, end)
        else:
            rebuilt = rebuild_from_flat_files(ledger, store, row.dataset, row.ticker, start, end, source)
            if isinstance(rebuilt, str):
                result.skipped[rebuilt] += 1
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
    return result

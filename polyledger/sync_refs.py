"""Splits and dividends announced since a ticker's unit was fetched: `sync` asks the
whole market's recent ones in one listing (a page or two), and queues again only the
settled units of tickers with a record their file does not hold as listed (a new one, or
one the provider corrected under its id), or whose file holds a record dated inside the
listing's window that the listing no longer shows as held (withdrawn, or corrected).
Fetched again, a splits unit replaces the ticker's rows in the ledger's `splits` table,
and adjusted bar units fetched before a new split become stale exactly as `audit`
reports them today."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

import polars as pl

from polyledger.datasets import dividends, splits
from polyledger.datasets.reference import ReferenceEndpoint, results_frame
from polyledger.errors import StorageError
from polyledger.ledger import Ledger, queries
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.fetch import FetchCost
from polyledger.polygon.reference import iter_results
from polyledger.storage import BarStore


class Refreshed(NamedTuple):
    """A dataset sync lists market-wide: its endpoint (path and columns), the date its
    records are asked by, and what a record says (compared under its id: the provider
    corrects a record in place, a ratio or an amount fixed under the same id; not what it
    recomputes as later events come, such as historical_adjustment_factor)."""

    endpoint: ReferenceEndpoint
    dated_by: str
    says: tuple[str, ...]


REFRESHED = {
    "splits": Refreshed(splits.SPLITS, "execution_date", splits.NATURAL_KEY),
    "dividends": Refreshed(dividends.DIVIDENDS, "ex_dividend_date", dividends.NATURAL_KEY),
}
# records dated up to this long before the last check are asked again: a split or a
# dividend entered late, after its date, is still picked up
LOOKBACK = dt.timedelta(days=queries.LATE_ENTRY_DAYS)
Record = tuple[object, ...]  # a record as compared: its id, then what it says (Refreshed.says)


def checked_key(dataset: str) -> str:
    return f"sync.checked.{dataset}"


def announced(client: PolygonClient, dataset: str, since: dt.date) -> dict[str, set[Record]]:
    """ticker -> the dataset's records dated `since` or later, market-wide, each its id and
    what it says, in the file's types (the rows a unit's fetch would store)."""
    listed = REFRESHED[dataset]
    params = {"limit": "5000", f"{listed.dated_by}.gte": since.isoformat()}
    rows = [row for page in iter_results(client, listed.endpoint.path, params, FetchCost()) for row in page]
    frame = results_frame(rows, listed.endpoint).filter(
        pl.col("ticker").is_not_null() & pl.col("id").is_not_null()
    )
    out: dict[str, set[Record]] = {}
    for ticker, record in zip(frame["ticker"], frame.select("id", *listed.says).rows(), strict=True):
        out.setdefault(ticker, set()).add(record)
    return out


def since_when(ledger: Ledger, dataset: str) -> dt.date | None:
    """The first record date to ask for: the last check (or the oldest fetch) less the
    lookback; None when no unit of the dataset is settled yet (nothing to refresh)."""
    checked = ledger.setting(checked_key(dataset))
    if checked:
        return dt.date.fromisoformat(checked) - LOOKBACK
    rows = queries.settled_reference_units(ledger, dataset)
    fetched = [str(row.fetched_at)[:10] for row in rows if row.fetched_at]
    return dt.date.fromisoformat(min(fetched)) - LOOKBACK if fetched else None


def covered(ledger: Ledger, dataset: str) -> list[str]:
    """The tickers a refresh of `dataset` checks: those with a settled unit."""
    return [row.ticker for row in queries.settled_reference_units(ledger, dataset)]


class Refresh(NamedTuple):
    """What a refresh queued again: tickers whose records changed, and tickers whose file
    could not be read (gone, damaged, a store that failed to answer): fetched whole again
    rather than the night's bars left waiting on a file nobody repairs."""

    changed: list[str]
    unreadable: list[str]


def refresh(ledger: Ledger, store: BarStore, client: PolygonClient, dataset: str, today: dt.date) -> Refresh:
    """Queue again the settled units of tickers with records announced or corrected since,
    or with records withdrawn or corrected since (dated inside the window, no longer listed
    as held), or whose file cannot be read. The check's date is remembered for the next
    sync, once the check is done: a listing that fails raises before anything is queued or
    remembered, and the next sync asks again from the last check that worked."""
    since = since_when(ledger, dataset)
    if since is None:
        return Refresh([], [])
    recent = announced(client, dataset, since)
    # files that may hold a record the listing should show: the ledger knows whose splits
    # are recent; a dividends file is read whenever done (None: all of them)
    dated = queries.tickers_with_splits_since(ledger, since) if dataset == "splits" else None
    stale, unreadable = [], []
    for row in queries.settled_reference_units(ledger, dataset):
        listed = recent.get(row.ticker, set())
        held: set[Record] = set()
        held_recent: set[Record] = set()  # dated inside the window: must still be listed
        readable = row.state == "done" and row.file_path
        if readable and (listed or dated is None or row.ticker in dated):
            try:
                held, held_recent = _held(store, row.file_path, REFRESHED[dataset], since)
            except (OSError, StorageError, pl.exceptions.PolarsError):
                unreadable.append(row.ticker)
                continue
        unheld = listed - held
        if dataset == "splits":
            unheld = _not_kept_on_another_date(unheld, held, REFRESHED[dataset])
        if unheld or held_recent - listed:
            stale.append(row.ticker)
    ledger.reset_settled(dataset, stale + unreadable)
    ledger.set_setting(checked_key(dataset), today.isoformat())
    return Refresh(stale, unreadable)


def _held(store: BarStore, path: str, listed: Refreshed, since: dt.date) -> tuple[set[Record], set[Record]]:
    """A unit file's records as `announced` gives them: all of them, and those dated
    `since` or later that have an id (records without one, from older answers, cannot be
    told withdrawn: never every night)."""
    frame = store.read_parquet(path, columns=["id", *listed.says]).select("id", *listed.says)
    recent = frame.filter((pl.col(listed.dated_by) >= since) & pl.col("id").is_not_null())
    return set(frame.rows()), set(recent.rows())


def _not_kept_on_another_date(records: set[Record], held: set[Record], listed: Refreshed) -> set[Record]:
    """`records` but those of a split the file holds on another date: the API lists some
    splits twice (the same ratio a few days apart), a unit's file keeps the real date's
    record only (`splits.one_date_each`), and the other one, still listed, is no news (a
    unit fetched again every night for weeks otherwise)."""
    if not records or not held:
        return records
    names = ("id", *listed.says)

    def frame(rows: Iterable[Record]) -> pl.DataFrame:
        return pl.DataFrame([dict(zip(names, row, strict=True)) for row in rows]).select(
            "execution_date", "split_from", "split_to"
        )

    held_days = set(frame(held)["execution_date"].to_list())
    news = set()
    for record in records:
        twins = splits.listed_twice(frame([*held, record]))
        day = dict(zip(names, record, strict=True))["execution_date"]
        if not any(day in twin.days and held_days & (set(twin.days) - {day}) for twin in twins):
            news.add(record)
    return news

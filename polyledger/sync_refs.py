"""Splits and dividends announced since a ticker's unit was fetched: `sync` asks the
whole market's recent ones in one listing (a page or two), and queues again only the
settled units of tickers with a record their file does not hold, or whose file holds a
record dated inside the listing's window that it no longer lists (withdrawn). Fetched
again, a splits unit replaces the ticker's rows in the ledger's `splits` table, and
adjusted bar units fetched before a new split become stale exactly as `audit` reports
them today."""

from __future__ import annotations

import datetime as dt

import polars as pl

from polyledger.ledger import Ledger, queries
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.fetch import FetchCost
from polyledger.polygon.reference import iter_results
from polyledger.storage import BarStore

# dataset -> (listing endpoint, the date a record is filtered by)
REFRESHED = {
    "splits": ("/stocks/v1/splits", "execution_date"),
    "dividends": ("/stocks/v1/dividends", "ex_dividend_date"),
}
# records dated up to this long before the last check are asked again: a split or a
# dividend entered late, after its date, is still picked up
LOOKBACK = dt.timedelta(days=queries.LATE_ENTRY_DAYS)


def checked_key(dataset: str) -> str:
    return f"sync.checked.{dataset}"


def announced(client: PolygonClient, dataset: str, since: dt.date) -> dict[str, set[str]]:
    """ticker -> ids of the dataset's records dated `since` or later, market-wide."""
    path, field = REFRESHED[dataset]
    params = {"limit": "5000", f"{field}.gte": since.isoformat()}
    out: dict[str, set[str]] = {}
    for page in iter_results(client, path, params, FetchCost()):
        for row in page:
            if row.get("ticker") and row.get("id"):
                out.setdefault(str(row["ticker"]), set()).add(str(row["id"]))
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


def refresh(
    ledger: Ledger, store: BarStore, client: PolygonClient, dataset: str, today: dt.date
) -> list[str]:
    """Queue again the settled units of tickers with records announced since, or with
    records withdrawn since (dated inside the window, no longer listed); returns those
    tickers. The check's date is remembered for the next sync, once the check is done: a
    listing that fails raises before anything is queued or remembered, and the next sync
    asks again from the last check that worked."""
    since = since_when(ledger, dataset)
    if since is None:
        return []
    recent = announced(client, dataset, since)
    # files that may hold a record the listing should show: the ledger knows whose splits
    # are recent; a dividends file is read whenever done (None: all of them)
    dated = queries.tickers_with_splits_since(ledger, since) if dataset == "splits" else None
    field = REFRESHED[dataset][1]
    stale = []
    for row in queries.settled_reference_units(ledger, dataset):
        ids = recent.get(row.ticker, set())
        held: set[str] = set()
        held_recent: set[str] = set()  # dated inside the window: must still be listed
        readable = row.state == "done" and row.file_path
        if readable and (ids or dated is None or row.ticker in dated):
            frame = store.read_parquet(row.file_path, columns=["id", field])
            held = set(frame.get_column("id").to_list())
            # records without an id (older answers) cannot be told withdrawn: never every night
            recent_ids = frame.filter((pl.col(field) >= since) & pl.col("id").is_not_null()).get_column("id")
            held_recent = set(recent_ids.to_list())
        if ids - held or held_recent - ids:
            stale.append(row.ticker)
    ledger.reset_settled(dataset, stale)
    ledger.set_setting(checked_key(dataset), today.isoformat())
    return stale

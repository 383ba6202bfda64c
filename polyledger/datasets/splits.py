"""Splits: one unit per ticker, every split of its history (stocks/v1/splits).

    splits/ticker=AAPL/part.parquet

Also copied into the ledger's `splits` table, so the stale-adjustment audit is one query.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.datasets.reference import ReferenceEndpoint, fetch_results, unique_records
from polyledger.datasets.spec import DatasetSpec, ticker_path

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit, Ledger
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

SPLITS = ReferenceEndpoint(
    "splits",
    "/stocks/v1/splits",
    {"limit": "5000"},
    {
        "ticker": pl.String(),
        "execution_date": pl.Date(),
        "split_from": pl.Float64(),
        "split_to": pl.Float64(),
        "adjustment_type": pl.String(),
        "historical_adjustment_factor": pl.Float64(),
        "id": pl.String(),
    },
    ("execution_date",),
)


# what makes two records without an id the same split (historical_adjustment_factor is
# recomputed by the API as later splits come)
NATURAL_KEY = ("ticker", "execution_date", "split_from", "split_to", "adjustment_type")


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    params = {**SPLITS.params, "ticker": unit.ticker}
    return unique_records(fetch_results(client, SPLITS, SPLITS.path, params, unit.ticker, spent), NATURAL_KEY)


def split_rows(frame: pl.DataFrame) -> list[tuple[str, float, float]]:
    """(execution_date, split_from, split_to) of a splits frame, for the ledger's table."""
    if frame.height == 0:
        return []
    rows = frame.select("execution_date", "split_from", "split_to").drop_nulls().rows()
    return [(day.isoformat(), float(split_from), float(split_to)) for day, split_from, split_to in rows]


def copy_to_ledger(ledger: Ledger, unit: ClaimedUnit, frame: pl.DataFrame) -> None:
    ledger.replace_splits(unit.ticker, split_rows(frame))


def layout(ticker: str, period_start: dt.date) -> str:
    return ticker_path("splits", ticker)


SPEC = DatasetSpec(
    name="splits",
    grain="ticker",
    summary="splits (a unit per ticker)",
    schema=SPLITS.schema,
    layout=layout,
    stand_in="/stocks/v1/splits?ticker=T: the synthetic listings' splits, paged",
    fetch_unit=fetch,
    after_fetch=copy_to_ledger,
)

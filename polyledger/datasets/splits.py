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
from polyledger.errors import PermanentError

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
    frame = unique_records(
        fetch_results(client, SPLITS, SPLITS.path, params, unit.ticker, spent), NATURAL_KEY
    )
    check_one_ratio_a_day(unit.ticker, frame)
    return frame


def check_one_ratio_a_day(ticker: str, frame: pl.DataFrame) -> None:
    """Two different ratios on one execution date cannot both be the split: the unit
    fails `conflicting_splits` saying both (the ledger's table, which adjustment and the
    stale audit read, holds one ratio a day; keeping either one silently would adjust
    every earlier bar by a guess). A later `retry --class conflicting_splits` asks again."""
    ratios = (
        frame.select("execution_date", "split_from", "split_to")
        .drop_nulls()
        .filter(pl.col("split_from") > 0)
        .with_columns((pl.col("split_to") / pl.col("split_from")).round(9).alias("ratio"))
        .unique(["execution_date", "ratio"], maintain_order=True)  # 1->4 and 2->8 agree
    )
    clashes = ratios.filter(pl.col("execution_date").is_duplicated())
    if clashes.height:
        day = clashes.get_column("execution_date")[0]
        said = [
            f"{a:g}->{b:g}"
            for a, b in clashes.filter(pl.col("execution_date") == day)
            .sort("ratio")
            .select("split_from", "split_to")
            .rows()
        ]
        raise PermanentError(
            f"the API lists {len(said)} different splits of {ticker} on {day}: {' and '.join(said)}",
            error_class="conflicting_splits",
        )


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

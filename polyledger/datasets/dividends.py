"""Dividends: one unit per ticker, every dividend of its history (stocks/v1/dividends).

dividends/ticker=AAPL/part.parquet

The file holds each record the API listed once per `id` (`sync`'s refresh compares the
records it lists, each id and what it says, with the file's). The API has listed one
dividend twice under two ids (polygon-io/issues#162, "Duplicate dividends on the same
day"): records that say the same (NATURAL_KEY) are one dividend to whoever reads them
(`unique_dividends`), while a regular and a special one going ex on one day differ in
frequency and type and stay two.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.datasets.reference import Frame, ReferenceEndpoint, fetch_results, unique_records
from polyledger.datasets.spec import DatasetSpec, ticker_path

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

DIVIDENDS = ReferenceEndpoint(
    "dividends",
    "/stocks/v1/dividends",
    {"limit": "5000"},
    {
        "ticker": pl.String(),
        "ex_dividend_date": pl.Date(),
        "declaration_date": pl.Date(),
        "record_date": pl.Date(),
        "pay_date": pl.Date(),
        "cash_amount": pl.Float64(),
        "split_adjusted_cash_amount": pl.Float64(),
        "currency": pl.String(),
        "frequency": pl.Int64(),
        "distribution_type": pl.String(),
        "historical_adjustment_factor": pl.Float64(),
        "id": pl.String(),
    },
    ("ex_dividend_date", "declaration_date", "record_date", "pay_date"),
)
# what a dividend is, whatever its id: not split_adjusted_cash_amount nor
# historical_adjustment_factor either, which the API recomputes as later events come
NATURAL_KEY = (
    "ticker",
    "ex_dividend_date",
    "declaration_date",
    "record_date",
    "pay_date",
    "cash_amount",
    "currency",
    "frequency",
    "distribution_type",
)


def unique_dividends(frame: Frame) -> Frame:
    """Each dividend once, in the order first listed: records identical in NATURAL_KEY are
    one dividend whatever their ids (one listed twice under two ids would otherwise be
    paid twice: adjusting on read sums the cash going ex on a day)."""
    return frame.unique(list(NATURAL_KEY), keep="first", maintain_order=True)


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    params = {**DIVIDENDS.params, "ticker": unit.ticker}
    # as listed, each id once (records without one, by what they say): sync's refresh
    # compares records by id, and a file without a record the API lists would be fetched
    # every night
    return unique_records(
        fetch_results(client, DIVIDENDS, DIVIDENDS.path, params, unit.ticker, spent), NATURAL_KEY
    )


def layout(ticker: str, period_start: dt.date) -> str:
    return ticker_path("dividends", ticker)


SPEC = DatasetSpec(
    name="dividends",
    grain="ticker",
    summary="dividends (a unit per ticker)",
    schema=DIVIDENDS.schema,
    layout=layout,
    stand_in="/stocks/v1/dividends?ticker=T: the synthetic listings' dividends, paged",
    fetch_unit=fetch,
)

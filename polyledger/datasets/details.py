"""Ticker details as of a date: one unit per listing and build date (v3/reference/tickers/T),
planned by `polyledger universe` (see universe_build.py).

    details/as_of=2024-03-01/ticker=AAPL/part.parquet

One file per ticker and date asked: the build date, or the last day a listing delisted
before it traded (`as_of` is that date). A universe as of D reads its own details.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.datasets.reference import ReferenceEndpoint, fetch_results
from polyledger.datasets.spec import PART_NAME, DatasetSpec
from polyledger.periods import et_today
from polyledger.symbols import ticker_path_component

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

DETAILS = ReferenceEndpoint(
    "details",
    "/v3/reference/tickers/{ticker}",
    {},
    {
        "ticker": pl.String(),
        "name": pl.String(),
        "primary_exchange": pl.String(),
        "type": pl.String(),
        "active": pl.Boolean(),
        "cik": pl.String(),
        "composite_figi": pl.String(),
        "share_class_figi": pl.String(),
        "list_date": pl.Date(),
        "delisted_utc": pl.String(),
        "market_cap": pl.Float64(),
        "share_class_shares_outstanding": pl.Float64(),
        "weighted_shares_outstanding": pl.Float64(),
        "sic_code": pl.String(),
    },
    ("list_date",),
)


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    """The ticker's details as of the unit's last day (today's without a date). A 404 is
    its own answer (unknown ticker), raised by the client as not_found."""
    params = {} if unit.period_end >= et_today() else {"date": unit.period_end.isoformat()}
    return fetch_results(client, DETAILS, DETAILS.path.format(ticker=unit.ticker), params, unit.ticker, spent)


def layout(ticker: str, period_start: dt.date) -> str:
    return f"details/as_of={period_start.isoformat()}/ticker={ticker_path_component(ticker)}/{PART_NAME}"


SPEC = DatasetSpec(
    name="details",
    grain="ticker",
    summary="details (a unit per ticker and build date; planned by `universe`)",
    schema=DETAILS.schema,
    layout=layout,
    stand_in="/v3/reference/tickers/{T}?date=D: a synthetic listing's details as of D",
    fetch_unit=fetch,
    planned_by="universe",
    per_build=True,
)

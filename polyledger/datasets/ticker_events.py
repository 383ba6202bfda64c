"""Ticker events: the symbols a company has traded under (`/vX/reference/tickers/{id}/events`,
experimental), one unit per active listing and universe build date, keyed by the
listing's composite FIGI (its ticker where it has none); planned by `polyledger
universe`, which links each earlier symbol to the company's security.

    ticker_events/as_of=2024-03-01/ticker=BBG000MM2P62/part.parquet

Given a ticker the endpoint answers for the company that holds it *now*, hence the FIGI;
the answer's own composite FIGI and CIK are kept, so one for another company is dropped.
It misses many delisted names (their renames are not found). A 404 (an id the endpoint
does not know) is an answer: no events.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.datasets.spec import PART_NAME, DatasetSpec
from polyledger.errors import PermanentError
from polyledger.symbols import ticker_path_component

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

PATH = "/vX/reference/tickers/{ticker}/events"
SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),  # the id asked: the listing's composite FIGI, or its ticker
    "name": pl.String(),
    "composite_figi": pl.String(),  # of the company the answer is about, when it says
    "cik": pl.String(),
    "date": pl.Date(),  # the day the company started trading under `symbol`
    "event_type": pl.String(),
    "symbol": pl.String(),
}


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    from polyledger.polygon.reference import iter_results  # the registry loads without the client

    path = PATH.format(ticker=unit.ticker)
    try:
        results = [
            row for page in iter_results(client, path, {"types": "ticker_change"}, spent) for row in page
        ]
    except PermanentError as exc:
        if exc.error_class == "not_found":
            return pl.DataFrame(schema=SCHEMA)
        raise
    return events_frame(unit.ticker, results)


def events_frame(ticker: str, results: list[dict]) -> pl.DataFrame:
    """The endpoint's `results` object(s) -> one row per ticker_change event."""
    rows = []
    for result in results:
        for event in result.get("events") or []:
            change = event.get("ticker_change") or {}
            kind = event.get("type") or event.get("event_type")
            if kind == "ticker_change" and change.get("ticker") and event.get("date"):
                rows.append(
                    {
                        "ticker": ticker,
                        "name": result.get("name"),
                        "composite_figi": result.get("composite_figi"),
                        "cik": result.get("cik"),
                        "date": str(event["date"])[:10],
                        "event_type": kind,
                        "symbol": str(change["ticker"]),
                    }
                )
    text = {**SCHEMA, "date": pl.String()}
    frame = pl.DataFrame(rows, schema=text, strict=False)
    return frame.with_columns(pl.col("date").str.to_date("%Y-%m-%d", strict=False)).drop_nulls("date")


def layout(ticker: str, period_start: dt.date) -> str:
    return (
        f"ticker_events/as_of={period_start.isoformat()}/ticker={ticker_path_component(ticker)}/{PART_NAME}"
    )


SPEC = DatasetSpec(
    name="ticker_events",
    grain="ticker",
    summary="ticker events (a unit per active ticker and build date; planned by `universe`)",
    schema=SCHEMA,
    layout=layout,
    stand_in="/vX/reference/tickers/{T}/events: ticker_change events of the company holding T now",
    fetch_unit=fetch,
    planned_by="universe",
)

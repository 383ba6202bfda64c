"""Ticker events: the symbols a company has traded under (`/vX/reference/tickers/{id}/events`,
experimental), one unit per company and universe build date, keyed by a listing's
composite FIGI, delisted or not (an active listing's ticker where it has none); planned by
`polyledger universe`, which links each earlier symbol to the company's security.

    ticker_events/as_of=2024-03-01/ticker=BBG000MM2P62/part.parquet

Given a ticker the endpoint answers for the company that holds it *now*, hence the FIGI;
the answer's own composite FIGI and CIK are kept, so one for another company is dropped.
It misses many delisted names (their renames are not found; a delisted listing without a
FIGI is not asked: its ticker would be answered for its holder now). A 404 (an id the endpoint
does not know) is an answer: no events.

An event's date is known to within a few days only: the recorded answer for FB -> META
says 2022-06-11 (a Saturday), META traded from 06-09. So for each change from one symbol
to the next the unit also reads both symbols' day bars within `SLACK` of its date (never
after the day before the build): the sessions each traded then, from which `universe`
places the boundary between the two windows where the trading shows it. A 403 (a rename
before the plan's history) or another permanent error leaves them unread, saying why in
`trading_unread`; the unit is still done.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING

import polars as pl

from polyledger.datasets.spec import PART_NAME, DatasetSpec
from polyledger.errors import PermanentError, one_line
from polyledger.symbols import ticker_path_component

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

PATH = "/vX/reference/tickers/{ticker}/events"
DAY = pl.Struct({"day": pl.Date(), "open": pl.Float64(), "close": pl.Float64()})
SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),  # the id asked: the listing's composite FIGI, or its ticker
    "name": pl.String(),
    "composite_figi": pl.String(),  # of the company the answer is about, when it says
    "cik": pl.String(),
    "date": pl.Date(),  # the day the company started trading under `symbol`
    "event_type": pl.String(),
    "symbol": pl.String(),
    # a change from another symbol (the one of the event before; null for the first, or
    # for two symbols on one day): each one's day bars within SLACK of `date` (session,
    # open, close; split-adjusted), or why they could not be read
    "previous_symbol": pl.String(),
    "previous_bars": pl.List(DAY),
    "bars": pl.List(DAY),
    "trading_unread": pl.String(),
}
SLACK = dt.timedelta(days=7)  # how far either side of an event's date the trading is read


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
    return with_trading(client, events_frame(unit.ticker, results), unit.period_start, spent)


def with_trading(
    client: PolygonClient, frame: pl.DataFrame, build_day: dt.date, spent: FetchCost
) -> pl.DataFrame:
    """The events with the trading around each change from one symbol to the next: two
    small day-bar requests per change (none for a company that never changed symbol),
    asked split-adjusted whatever the ledger stores (a split on the day of the change
    must not look like another company's price)."""
    rows = frame.unique(["date", "symbol"], maintain_order=True).sort("date").to_dicts()
    per_day = Counter(row["date"] for row in rows)
    for i, row in enumerate(rows):
        before = rows[i - 1] if i else None
        if before is None or per_day[row["date"]] > 1 or per_day[before["date"]] > 1:
            continue  # the first symbol, or two on one day: no single change to place
        row["previous_symbol"] = before["symbol"]
        first, last = row["date"] - SLACK, min(row["date"] + SLACK, build_day - dt.timedelta(days=1))
        if first > last:
            row["trading_unread"] = "the change is after the build date"
            continue
        try:
            row["previous_bars"] = _day_bars(client, before["symbol"], first, last, spent)
            row["bars"] = _day_bars(client, row["symbol"], first, last, spent)
        except PermanentError as exc:  # not_entitled above all: a rename before the plan's history
            row["previous_bars"] = row["bars"] = None
            row["trading_unread"] = f"{exc.error_class}: {one_line(exc, 120)}"
    return pl.DataFrame(rows, schema=SCHEMA)


def _day_bars(
    client: PolygonClient, symbol: str, first: dt.date, last: dt.date, spent: FetchCost
) -> list[dict]:
    """`symbol`'s day bars of [first, last] (whoever traded it), as {day, open, close}."""
    from polyledger.periods import et_date_of_ms
    from polyledger.polygon.fetch import iter_pages

    found: dict[dt.date, dict] = {}
    for page in iter_pages(client, symbol, "day", first, last, True, spent):
        for t, o, c in page.select("t", "o", "c").iter_rows():
            day = et_date_of_ms(t)
            if first <= day <= last:  # a stray bar outside the dates asked is no evidence
                found.setdefault(day, {"day": day, "open": o, "close": c})
    return [found[day] for day in sorted(found)]


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
    frame = pl.DataFrame(rows, schema=text, strict=False)  # the trading columns null until read
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
    per_build=True,
)

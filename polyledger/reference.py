"""Reference datasets: splits, dividends and ticker details, one ledger unit per ticker.

    data/splits/ticker=AAPL/part.parquet      every split of the ticker (stocks/v1/splits)
    data/dividends/ticker=AAPL/part.parquet   every dividend (stocks/v1/dividends)
    data/details/ticker=AAPL/part.parquet     ticker details as of a date (v3/reference/tickers/T)

Same guarantees as bars: claimed under a lease, written atomically, settled `done` with
its file or `empty_confirmed` (no splits is an answer, not an error). Splits are also
copied into the ledger's `splits` table, so the stale-adjustment audit is one query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from polyledger.ledger import ClaimedUnit, Ledger, PlannedUnit
from polyledger.periods import PERIOD_ALL, REFERENCE_DATASETS, et_today
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.fetch import FetchCost
from polyledger.polygon.reference import iter_results

FIRST_DAY = dt.date(2000, 1, 1)  # reference units are not a period: fixed dates keep the schema whole


@dataclass(frozen=True)
class ReferenceDataset:
    name: str
    path: str  # endpoint; {ticker} is filled in for details
    params: dict[str, str]
    schema: dict[str, pl.DataType]
    dates: tuple[str, ...]  # columns sent as YYYY-MM-DD strings


def _schema(**columns: pl.DataType) -> dict[str, pl.DataType]:
    return dict(columns)


SPLITS = ReferenceDataset(
    "splits",
    "/stocks/v1/splits",
    {"limit": "5000"},
    _schema(
        ticker=pl.String(),
        execution_date=pl.Date(),
        split_from=pl.Float64(),
        split_to=pl.Float64(),
        adjustment_type=pl.String(),
        historical_adjustment_factor=pl.Float64(),
        id=pl.String(),
    ),
    ("execution_date",),
)
DIVIDENDS = ReferenceDataset(
    "dividends",
    "/stocks/v1/dividends",
    {"limit": "5000"},
    _schema(
        ticker=pl.String(),
        ex_dividend_date=pl.Date(),
        declaration_date=pl.Date(),
        record_date=pl.Date(),
        pay_date=pl.Date(),
        cash_amount=pl.Float64(),
        split_adjusted_cash_amount=pl.Float64(),
        currency=pl.String(),
        frequency=pl.Int64(),
        distribution_type=pl.String(),
        historical_adjustment_factor=pl.Float64(),
        id=pl.String(),
    ),
    ("ex_dividend_date", "declaration_date", "record_date", "pay_date"),
)
DETAILS = ReferenceDataset(
    "details",
    "/v3/reference/tickers/{ticker}",
    {},
    _schema(
        ticker=pl.String(),
        name=pl.String(),
        primary_exchange=pl.String(),
        type=pl.String(),
        active=pl.Boolean(),
        cik=pl.String(),
        composite_figi=pl.String(),
        share_class_figi=pl.String(),
        list_date=pl.Date(),
        delisted_utc=pl.String(),
        market_cap=pl.Float64(),
        share_class_shares_outstanding=pl.Float64(),
        weighted_shares_outstanding=pl.Float64(),
        sic_code=pl.String(),
    ),
    ("list_date",),
)
REFERENCE = {dataset.name: dataset for dataset in (SPLITS, DIVIDENDS, DETAILS)}
assert set(REFERENCE) == set(REFERENCE_DATASETS)


def results_frame(rows: Sequence[dict], dataset: ReferenceDataset) -> pl.DataFrame:
    """API result objects -> the dataset's columns (missing fields are null, extra ones dropped)."""
    text_schema = {
        name: (pl.String() if name in dataset.dates else dtype) for name, dtype in dataset.schema.items()
    }
    frame = pl.DataFrame(
        [{name: row.get(name) for name in text_schema} for row in rows], schema=text_schema, strict=False
    )
    return frame.with_columns(pl.col(name).str.to_date("%Y-%m-%d", strict=False) for name in dataset.dates)


def planned_reference_units(
    tickers: Iterable[str], dataset: str, as_of: dt.date, period: str = PERIOD_ALL
) -> Iterable[PlannedUnit]:
    """One unit per ticker. `period` names what the unit is (details are per date)."""
    for ticker in tickers:
        yield PlannedUnit(dataset, ticker, FIRST_DAY, as_of, period_name=period)


def fetch_reference(client: PolygonClient, unit: ClaimedUnit, spent: FetchCost) -> pl.DataFrame:
    """Every result of the unit's endpoint for its ticker, as the dataset's columns."""
    dataset = REFERENCE[unit.dataset]
    if dataset is DETAILS:
        params = {} if unit.period_end >= et_today() else {"date": unit.period_end.isoformat()}
        path = dataset.path.format(ticker=unit.ticker)
    else:
        params = {**dataset.params, "ticker": unit.ticker}
        path = dataset.path
    rows = [row for page in iter_results(client, path, params or None, spent) for row in page]
    # a details 404 is its own answer (unknown ticker), raised by the client as not_found
    return results_frame(rows, dataset).filter(pl.col("ticker") == unit.ticker)


def split_rows(frame: pl.DataFrame) -> list[tuple[str, float, float]]:
    """(execution_date, split_from, split_to) of a splits frame, for the ledger's table."""
    if frame.height == 0:
        return []
    rows = frame.select("execution_date", "split_from", "split_to").drop_nulls().rows()
    return [(day.isoformat(), float(split_from), float(split_to)) for day, split_from, split_to in rows]


def plan_reference(ledger: Ledger, tickers: list[str], dataset: str, as_of: dt.date) -> int:
    """Add a unit per ticker for a reference dataset; returns how many were new."""
    return ledger.add_units(planned_reference_units(tickers, dataset, as_of))

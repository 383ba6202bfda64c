"""What the reference datasets (splits, dividends, ticker details) share: one unit per
ticker, fetched whole from a JSON `results` endpoint and kept as the dataset's columns.

Same guarantees as bars: claimed under a lease, written atomically, settled `done` with
its file or `empty_confirmed` (no splits is an answer, not an error).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from polyledger.ledger.records import PlannedUnit

if TYPE_CHECKING:
    from polyledger.ledger import Ledger
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

FIRST_DAY = dt.date(2000, 1, 1)  # reference units are not a period: fixed dates keep the schema whole
PERIOD_ALL = "all"


@dataclass(frozen=True)
class ReferenceEndpoint:
    """A reference endpoint and the columns kept from its results."""

    name: str
    path: str  # endpoint; {ticker} is filled in for details
    params: dict[str, str]
    schema: dict[str, pl.DataType]
    dates: tuple[str, ...]  # columns sent as YYYY-MM-DD strings


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def unique_records(frame: Frame, natural_key: Sequence[str]) -> Frame:
    """Each record once, in the order first sent: keyed by its `id` where it has one, else
    by `natural_key` (an answer listing a split or a dividend twice would otherwise store
    it twice, and a dividend apply twice)."""
    indexed = frame.with_row_index("_row")
    has_id = pl.col("id").is_not_null()
    return (
        pl.concat(
            [
                indexed.filter(has_id).unique("id", keep="first", maintain_order=True),
                indexed.filter(~has_id).unique(list(natural_key), keep="first", maintain_order=True),
            ]
        )
        .sort("_row")
        .drop("_row")
    )


def results_frame(rows: Sequence[dict], endpoint: ReferenceEndpoint) -> pl.DataFrame:
    """API result objects -> the dataset's columns (missing fields are null, extra ones dropped)."""
    text_schema = {
        name: (pl.String() if name in endpoint.dates else dtype) for name, dtype in endpoint.schema.items()
    }
    frame = pl.DataFrame(
        [{name: row.get(name) for name in text_schema} for row in rows], schema=text_schema, strict=False
    )
    return frame.with_columns(pl.col(name).str.to_date("%Y-%m-%d", strict=False) for name in endpoint.dates)


def fetch_results(
    client: PolygonClient,
    endpoint: ReferenceEndpoint,
    path: str,
    params: dict[str, str] | None,
    ticker: str,
    spent: FetchCost,
) -> pl.DataFrame:
    """Every result of `path` (all pages), as the endpoint's columns, of `ticker` only."""
    from polyledger.polygon.reference import iter_results  # the registry loads without the client

    rows = [row for page in iter_results(client, path, params or None, spent) for row in page]
    return results_frame(rows, endpoint).filter(pl.col("ticker") == ticker)


def planned_reference_units(
    tickers: Iterable[str], dataset: str, as_of: dt.date, period: str = PERIOD_ALL
) -> Iterable[PlannedUnit]:
    """One unit per ticker. `period` names what the unit is (details are per date)."""
    for ticker in tickers:
        yield PlannedUnit(dataset, ticker, FIRST_DAY, as_of, period_name=period)


def plan_reference(ledger: Ledger, tickers: list[str], dataset: str, as_of: dt.date) -> int:
    """Add a unit per ticker for a reference dataset; returns how many were new."""
    return ledger.add_units(planned_reference_units(tickers, dataset, as_of))

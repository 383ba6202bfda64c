"""What one dataset is, in one place: `DatasetSpec`.

Plan, run (runner and worker), the storage layout, audit, quality, report, the notebook
API and the CLI read a dataset's spec instead of branching on its name. A unit is keyed
by a ticker, or, for a dataset of whole trading days, by the market (`MARKET`, in the
units table's `ticker` column) and its date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import polars as pl

from polyledger.symbols import ticker_path_component

if TYPE_CHECKING:  # the registry stays importable without the API client (storage reads it)
    from polyledger.ledger import ClaimedUnit, Ledger
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

GRAINS = ("month", "year", "ticker", "date")
MARKET = "us-stocks"  # the key of a date-keyed unit: the market, never a ticker
PART_NAME = "part.parquet"

# (client, unit, adjusted, spent) -> the unit's rows in the stored schema
FetchUnit = Callable[["PolygonClient", "ClaimedUnit", bool, "FetchCost"], pl.DataFrame]


class FileReader(Protocol):
    """What an `AfterFetch` may read of the run's data: the files the ledger lists (the
    run's `storage.BarStore`, a layer above the datasets)."""

    def scan_parquet(self, relatives: Sequence[str], **kwargs: object) -> pl.LazyFrame: ...


# (ledger, the run's files, unit, rows) -> the rows to store: what else a fetched unit
# reads and updates (splits: a split listed on two dates told by the ledger's raw bars, then
# the ledger's splits table)
AfterFetch = Callable[["Ledger", FileReader, "ClaimedUnit", pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. Exactly one of `timespan` (bars fetched as one request range over a
    ticker's consecutive units, streamed and settled as pages pass each unit's end) and
    `fetch_unit` (a unit's whole answer, from its own request builder, page decoder and
    `polygon/paging.iter_pages`) is set."""

    name: str
    grain: str  # month | year | ticker (a ticker's whole history) | date (one trading day)
    summary: str  # one line for the CLI's help: what a unit is
    schema: dict[str, pl.DataType]  # the stored file's columns
    layout: Callable[[str, dt.date], str]  # (unit key, period_start) -> the file's relative path
    stand_in: str  # what the stand-in serves for it (polyledger/testing/server.py)
    timespan: str | None = None  # range bars: the aggregates timespan
    fetch_unit: FetchUnit | None = None
    after_fetch: AfterFetch | None = None
    group_size: int = 1  # consecutive units one request may cover
    quality_checks: tuple[str, ...] = ()  # the `audit --quality` checks its files get
    adjustable: bool = False  # asked adjusted or not: under the ledger's one `adjusted` choice
    bars: bool = False  # rows are bars (OHLCV, a timestamp each); else reference rows
    planned_by: str = "plan"  # the command that plans its units (details: `universe`)
    # one file per ticker and universe build date (`as_of=D/`): read back, each row says
    # which build it is of (`as_of`)
    per_build: bool = False

    def __post_init__(self) -> None:
        if self.grain not in GRAINS:
            raise ValueError(f"{self.name}: unknown grain {self.grain!r}")
        if (self.timespan is None) == (self.fetch_unit is None):
            raise ValueError(f"{self.name}: set exactly one of timespan and fetch_unit")

    @property
    def keyed_by(self) -> str:
        """What keys a unit besides its period: `ticker`, or `date` (one market's day)."""
        return "date" if self.grain == "date" else "ticker"

    @property
    def needs_range(self) -> bool:
        """Planned over --from/--to (months, years, trading days), not once per ticker."""
        return self.grain != "ticker"

    @property
    def needs_universe(self) -> bool:
        return self.keyed_by == "ticker"

    @property
    def clippable(self) -> bool:
        """A plan's range may cut a unit's period short (months and years), so a later,
        wider plan widens it."""
        return self.grain in ("month", "year")


def ticker_path(dataset: str, ticker: str, *parts: str) -> str:
    """`dataset/ticker=T/<parts>/part.parquet`, T as `symbols.ticker_path_component` spells
    it (distinct where case is ignored: `ABCpA` -> `ABC_pA`, `ABCPA` as it is)."""
    return "/".join([dataset, f"ticker={ticker_path_component(ticker)}", *parts, PART_NAME])

"""Planning: a universe and a date range become units in the ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from polyledger.errors import InputError
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.periods import DATASETS, unit_periods

EARLIEST = dt.date(2000, 1, 1)  # Polygon's stock history starts in 2003; anything earlier is a typo


@dataclass(frozen=True)
class PlanResult:
    dataset: str
    tickers: int
    units_in_plan: int
    added: int
    widened: int = 0  # clipped units extended by this wider plan
    busy: int = 0  # clipped units that could not be widened while a worker holds them

    @property
    def already_planned(self) -> int:
        return self.units_in_plan - self.added


def check_range(dataset: str, start: dt.date, end: dt.date) -> None:
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if start > end:
        raise InputError(f"--from {start} is after --to {end}")
    if start < EARLIEST:
        raise InputError(f"--from {start} is before {EARLIEST}: no stock data exists that early")


def plan_units(tickers: Iterable[str], dataset: str, start: dt.date, end: dt.date) -> Iterator[PlannedUnit]:
    """Units in ticker order, then time order (so a ticker's months sit together)."""
    _timespan, grain = DATASETS[dataset]
    periods = list(unit_periods(grain, start, end))
    for ticker in tickers:
        for period_start, period_end in periods:
            yield PlannedUnit(dataset, ticker, period_start, period_end)


def plan(ledger: Ledger, tickers: list[str], dataset: str, start: dt.date, end: dt.date) -> PlanResult:
    """Add the missing units for tickers x [start, end]; existing units keep their state."""
    check_range(dataset, start, end)
    _timespan, grain = DATASETS[dataset]
    per_ticker = sum(1 for _ in unit_periods(grain, start, end))
    added = ledger.add_units(plan_units(tickers, dataset, start, end))
    widened, busy = ledger.widen_clipped(dataset, tickers, start, end)
    return PlanResult(
        dataset=dataset,
        tickers=len(tickers),
        units_in_plan=per_ticker * len(tickers),
        added=added,
        widened=widened,
        busy=busy,
    )

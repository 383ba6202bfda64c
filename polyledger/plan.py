"""Planning: a universe and a date range become units in the ledger (a dataset of whole
trading days needs no universe: its units are the range's trading days)."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from polyledger import datasets
from polyledger.datasets import MARKET
from polyledger.errors import InputError
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.periods import unit_periods
from polyledger.trading_days import trading_days
from polyledger.universe import UniverseMember

EARLIEST = dt.date(2000, 1, 1)  # Polygon's stock history starts in 2003; anything earlier is a typo

Period = tuple[dt.date, dt.date]
Span = tuple[str, int, int]  # a ticker and the [lo, hi) indexes of its periods to plan


@dataclass(frozen=True)
class PlanResult:
    dataset: str
    tickers: int
    units_in_plan: int  # units inside the tickers' listing windows
    added: int
    widened: int = 0  # clipped units extended by this wider plan
    busy: int = 0  # clipped units that could not be widened while a worker holds them
    outside_listing: int = 0  # ticker x period pairs outside a listing window: not planned

    @property
    def already_planned(self) -> int:
        return self.units_in_plan - self.added


def check_range(dataset: str, start: dt.date, end: dt.date) -> None:
    if not datasets.get(dataset).needs_range:
        ranged = ", ".join(datasets.names(bars=True))
        raise InputError(f"--from/--to plan {ranged}, not {dataset}: a unit holds a ticker's whole history")
    if start > end:
        raise InputError(f"--from {start} is after --to {end}")
    if start < EARLIEST:
        raise InputError(f"--from {start} is before {EARLIEST}: no stock data exists that early")


def plan_units(
    universe: Iterable[UniverseMember | str], dataset: str, start: dt.date, end: dt.date
) -> Iterator[PlannedUnit]:
    """Units in ticker order, then time order (so a ticker's months sit together), only
    those overlapping each ticker's listing window."""
    periods = _periods(dataset, start, end)
    return _units(dataset, periods, (_span(member, periods) for member in universe))


def plan(
    ledger: Ledger, universe: Sequence[UniverseMember | str], dataset: str, start: dt.date, end: dt.date
) -> PlanResult:
    """Add the missing units for universe x [start, end]; existing units keep their state.
    Plain tickers have no listing window; members skip the periods outside theirs. A
    date-keyed dataset ignores the universe (`plan_days`)."""
    if datasets.get(dataset).keyed_by == "date":
        return plan_days(ledger, dataset, start, end)
    check_range(dataset, start, end)
    periods = _periods(dataset, start, end)
    spans = [_span(member, periods) for member in universe]  # one small tuple per ticker
    added = ledger.add_units(_units(dataset, periods, spans))  # streamed, never a list of units
    # a ticker with nothing to plan here must not get its old units re-queued either
    listed = [ticker for ticker, lo, hi in spans if hi > lo]
    widened, busy = ledger.widen_clipped(dataset, listed, start, end)
    in_plan = sum(hi - lo for _ticker, lo, hi in spans)
    return PlanResult(
        dataset=dataset,
        tickers=len(spans),
        units_in_plan=in_plan,
        added=added,
        widened=widened,
        busy=busy,
        outside_listing=len(spans) * len(periods) - in_plan,
    )


def plan_days(ledger: Ledger, dataset: str, start: dt.date, end: dt.date) -> PlanResult:
    """Add the missing units of a date-keyed dataset: one per trading day of [start, end]
    (weekends and NYSE holidays are no unit). A day is never clipped, so never widened."""
    check_range(dataset, start, end)
    units = [
        PlannedUnit(dataset, MARKET, day, day, period_name=day.isoformat())
        for day in trading_days(start, end)
    ]
    added = ledger.add_units(units)
    return PlanResult(dataset=dataset, tickers=0, units_in_plan=len(units), added=added)


def _periods(dataset: str, start: dt.date, end: dt.date) -> list[Period]:
    return list(unit_periods(datasets.get(dataset).grain, start, end))


def _span(member: UniverseMember | str, periods: Sequence[Period]) -> Span:
    """The periods (clipped by the plan's range only) that overlap the listing window.
    Periods are never clipped to the window: before a listing the API just has no bars,
    and clipping would make the ledger widen such units on every later plan."""
    if isinstance(member, str):
        return member, 0, len(periods)
    lo = 0
    if member.list_date is not None:  # first period ending on or after the listing
        lo = bisect_left(periods, member.list_date, key=lambda period: period[1])
    hi = len(periods)
    if member.last_day is not None:  # past the last period starting on or before the last day
        hi = bisect_right(periods, member.last_day, key=lambda period: period[0])
    return member.ticker, lo, max(lo, hi)


def _units(dataset: str, periods: list[Period], spans: Iterable[Span]) -> Iterator[PlannedUnit]:
    for ticker, lo, hi in spans:
        for period_start, period_end in periods[lo:hi]:
            yield PlannedUnit(dataset, ticker, period_start, period_end)

"""Which trading days a ticker's units cover: the holes no unit holds (never planned, or
planned only in part), for the readers' warning and `audit`'s `unplanned` class.

A day is a hole only when nothing explains it: a trading day (weekends and NYSE holidays
never are), inside one of the symbol's listing windows (before a listing or after a
delisting a symbol has no units by design), not before `plan.EARLIEST` (nothing can be
planned earlier) and not after yesterday (US/Eastern: a plan without `--to` stops there).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from polyledger.datasets.spec import MARKET
from polyledger.periods import et_today
from polyledger.trading_days import trading_days

Window = tuple["dt.date | None", "dt.date | None"]  # a listing window; None: unbounded
DAY = dt.timedelta(days=1)
EXAMPLES = 5


@dataclass(frozen=True)
class Hole:
    """Trading days of a ticker that no unit covers: its first and last, and how many."""

    ticker: str
    first_day: dt.date
    last_day: dt.date
    trading_days: int

    def __str__(self) -> str:
        return f"{self.ticker} {self.first_day}..{self.last_day}"


class TradingCalendar:
    """The trading days of [start, end], looked up by bisection (one walk of the days)."""

    def __init__(self, start: dt.date, end: dt.date) -> None:
        self.days = trading_days(start, end)

    def within(self, start: dt.date, end: dt.date) -> list[dt.date]:
        return self.days[bisect_left(self.days, start) : bisect_right(self.days, end)]


def last_plannable_day() -> dt.date:
    """Yesterday, US/Eastern: later days are no hole (their bars may not exist yet)."""
    return et_today() - DAY


def uncovered(
    spans: Iterable[tuple[dt.date, dt.date]], start: dt.date, end: dt.date
) -> list[tuple[dt.date, dt.date]]:
    """The calendar ranges of [start, end] that no span (sorted by start) covers."""
    ranges, cursor = [], start
    for first, last in spans:
        if first > cursor:
            ranges.append((cursor, min(first - DAY, end)))
        cursor = max(cursor, last + DAY)
        if cursor > end:
            return ranges
    if cursor <= end:
        ranges.append((cursor, end))
    return [(a, b) for a, b in ranges if a <= b]


def holes(
    ticker: str,
    ranges: Iterable[tuple[dt.date, dt.date]],
    windows: Sequence[Window] | None,
    calendar: TradingCalendar,
) -> list[Hole]:
    """The trading days of `ranges` (uncovered calendar ranges, in order) inside the
    symbol's listing `windows` (None or empty: no window known, every day counts), as
    holes in order."""
    found = []
    merged = union(windows) if windows else [(None, None)]
    for start, end in ranges:
        for low, high in merged:
            first = start if low is None else max(start, low)
            last = end if high is None else min(end, high)
            if first > last:
                continue
            days = calendar.within(first, last)
            if days:
                found.append(Hole(ticker, days[0], days[-1], len(days)))
    return found


def union(windows: Sequence[Window]) -> list[Window]:
    """Windows (listing windows, date ranges) merged where they overlap or touch, in order."""
    ordered = sorted(windows, key=lambda window: window[0] or dt.date.min)
    merged: list[Window] = []
    for low, high in ordered:
        if merged:
            last_low, last_high = merged[-1]
            if last_high is None or low is None or low <= last_high + DAY:
                top = None if last_high is None or high is None else max(last_high, high)
                merged[-1] = (last_low, top)
                continue
        merged.append((low, high))
    return merged


def describe(found: Sequence[Hole], shown: int = EXAMPLES) -> str:
    """'TINY 2024-02-01..2024-02-29, ...' for the first few holes, and how many in all
    (a date-keyed dataset's holes name no ticker)."""
    more = f", ... ({len(found)} in all)" if len(found) > shown else ""
    return ", ".join(_named(hole) for hole in found[:shown]) + more


def _named(hole: Hole) -> str:
    return f"{hole.first_day}..{hole.last_day}" if hole.ticker == MARKET else str(hole)

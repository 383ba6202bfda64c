"""The US stock market's trading days: weekdays the NYSE is open, from the maintained
`holidays` package's NYSE calendar (regular holidays and special closures alike, e.g.
Hurricane Sandy on 2012-10-29/30 and the day of mourning on 2025-01-09)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def _closed(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("NYSE", years=year))


def is_trading_day(day: dt.date) -> bool:
    """Is the NYSE open on `day` (a full or shortened session)?"""
    return day.weekday() < 5 and day not in _closed(day.year)


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """The trading days in [start, end], both ends inclusive, in order."""
    days, day = [], start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    return days

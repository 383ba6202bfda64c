"""Calendar arithmetic for units: months and years (a dataset's grain is in its spec).

All dates are US/Eastern session dates, both ends inclusive, as the API reads them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")


# fromisoformat alone also takes 20230101 and 2023-W01-1 on Python 3.11+ (not on 3.10):
# nobody means those, and a date must read the same on every Python the tool runs on
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date(text: str) -> dt.date:
    """A YYYY-MM-DD date and nothing else; ValueError otherwise."""
    if not DATE_RE.fullmatch(text):
        raise ValueError(f"not YYYY-MM-DD: {text!r}")
    return dt.date.fromisoformat(text)


def stored_date(value: object) -> dt.date:
    """A date as a ledger or a frame gives it back: a date (PostgreSQL, polars), or text
    beginning YYYY-MM-DD (SQLite; a timestamp's date part)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def parse_date(text: str, option: str) -> dt.date:
    """A YYYY-MM-DD date, or an InputError naming the option."""
    from polyledger.errors import InputError

    try:
        return iso_date(text.strip())
    except (ValueError, AttributeError):
        raise InputError(f"invalid date {text!r} for {option}: expected YYYY-MM-DD") from None


def month_end(day: dt.date) -> dt.date:
    """The last day of `day`'s month."""
    first_next = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first_next - dt.timedelta(days=1)


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """The first and last day of a unit's period, a month ("2024-03") or a year ("2024")."""
    if len(period) == 4:
        year = int(period)
        return dt.date(year, 1, 1), dt.date(year, 12, 31)
    first = dt.date(int(period[:4]), int(period[5:7]), 1)
    return first, month_end(first)


def unit_periods(grain: str, start: dt.date, end: dt.date) -> Iterator[tuple[dt.date, dt.date]]:
    """Consecutive calendar months or years covering [start, end], the first and last clipped."""
    if grain not in ("month", "year"):
        raise ValueError(f"unknown grain {grain!r}")
    cursor = start
    while cursor <= end:
        period_end = month_end(cursor) if grain == "month" else dt.date(cursor.year, 12, 31)
        yield cursor, min(period_end, end)
        cursor = period_end + dt.timedelta(days=1)


def et_today() -> dt.date:
    return dt.datetime.now(ET).date()


def et_date_of_ms(epoch_ms: int) -> dt.date:
    """The US/Eastern session date of an epoch-ms instant."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=ET).date()


def et_midnight_ms(day: dt.date) -> int:
    """Epoch ms of 00:00 US/Eastern on `day`."""
    return int(dt.datetime.combine(day, dt.time(), tzinfo=ET).timestamp() * 1000)

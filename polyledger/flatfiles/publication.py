"""When a day's flat file can be in the bucket: the provider publishes it around 11:00
US/Eastern the next day, sometimes later (polygon-api.md, "Flat files"). Before a day past
that, an object not found is not published yet (`not_published`: a later run reads it by
itself); after it, the file is missing (`missing_file`: `retry` it once it is there).
"""

from __future__ import annotations

import datetime as dt

from polyledger.periods import ET

PUBLISHED_AT = dt.time(11, 0)  # US/Eastern, the day after the session
LATE_BY = dt.timedelta(days=1)  # a file this much later than that is missing, not late


def expected_at(day: dt.date) -> dt.datetime:
    """When the flat file of `day` is usually published (aware, US/Eastern)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), PUBLISHED_AT, tzinfo=ET)


def not_published_yet(day: dt.date, now: dt.datetime) -> bool:
    """True while an object of `day` not in the bucket may still be published (`now` aware)."""
    return now < expected_at(day) + LATE_BY


def now() -> dt.datetime:
    """The wall clock the route judges publication by (aware; tests set another)."""
    return dt.datetime.now(dt.timezone.utc)

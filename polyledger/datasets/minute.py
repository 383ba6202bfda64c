"""Minute bars: one unit per ticker and calendar month.

minute/ticker=AAPL/year=2024/month=03/part.parquet
"""

from __future__ import annotations

import datetime as dt

from polyledger.bars import BAR_SCHEMA
from polyledger.datasets.spec import DatasetSpec, ticker_path

BAR_CHECKS = (
    "duplicate_timestamp",
    "non_monotonic",
    "ohlc_violation",
    "non_positive_price",
    "negative_volume",
    "extreme_jump",
    "duplicates_dropped",
    "unreadable_file",
)


def layout(ticker: str, period_start: dt.date) -> str:
    return ticker_path("minute", ticker, f"year={period_start.year:04d}", f"month={period_start.month:02d}")


SPEC = DatasetSpec(
    name="minute",
    grain="month",
    summary="minute (units = months)",
    schema=BAR_SCHEMA,
    layout=layout,
    stand_in="/v2/aggs/ticker/{T}/range/1/minute/{from}/{to}: the synthetic market's minute bars",
    timespan="minute",
    # Pages stream and each unit is settled as soon as a page passes its end, so a long
    # range costs no memory, and its requests are ceil(bars / 50,000): never more than
    # asking unit by unit. The cap only bounds what one failure can touch.
    group_size=60,
    # the bar checks, the session window, and each session against the ticker's daily bar
    quality_checks=(*BAR_CHECKS, "outside_session", "volume_mismatch", "missing_session"),
    adjustable=True,
    bars=True,
)

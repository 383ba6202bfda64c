"""Daily bars per ticker: one unit per ticker and calendar year.

day/ticker=AAPL/year=2024/part.parquet
"""

from __future__ import annotations

import datetime as dt

from polyledger.bars import BAR_SCHEMA
from polyledger.datasets.minute import BAR_CHECKS
from polyledger.datasets.spec import DatasetSpec, ticker_path


def layout(ticker: str, period_start: dt.date) -> str:
    return ticker_path("day", ticker, f"year={period_start.year:04d}")


SPEC = DatasetSpec(
    name="day",
    grain="year",
    summary="day (units = years)",
    schema=BAR_SCHEMA,
    layout=layout,
    stand_in="/v2/aggs/ticker/{T}/range/1/day/{from}/{to}: the minute bars aggregated per ET date",
    timespan="day",
    group_size=30,  # as minute: one request range for up to 30 years, streamed
    quality_checks=BAR_CHECKS,
    adjustable=True,
    bars=True,
)

"""Grouped daily bars: every symbol's daily bar for one trading day, in one request
(`/v2/aggs/grouped/locale/us/market/stocks/{date}`). One unit per NYSE trading day,
keyed by the market (`MARKET` in the units table's `ticker` column) and the date;
weekends and holidays are planned as nothing (`plan.plan_days`, `trading_days.py`). No universe: a unit
holds every symbol that traded that day, delisted-later names included, which makes it
the survivorship-free record of which symbols traded on which day.

    grouped_daily/year=2024/month=03/date=2024-03-08/part.parquet

Rows are bars in the stored bar schema, one per ticker (`timestamp` = 16:00 ET of the
date, as the API sends it). `audit --quality` cross-checks them against the per-ticker
`day` bars (`checks/grouped.py`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.bars import BAR_SCHEMA, session_dates, symbol_bars
from polyledger.datasets.spec import PART_NAME, DatasetSpec
from polyledger.errors import ProtocolError

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

NAME = "grouped_daily"
MAX_PAGES = 10  # the API sends one page per date; this only stops a runaway server
CHECKS = ("grouped_mismatch", "missing_in_grouped", "missing_in_day")


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    """Every symbol's bar of the unit's date, in the stored bar schema."""
    from polyledger.polygon.fetch import AdjustedAsAsked, flag
    from polyledger.polygon.grouped import decode_grouped, grouped_url
    from polyledger.polygon.paging import UnseenNextUrl, iter_pages

    day = unit.period_start
    pages = iter_pages(
        client,
        grouped_url(client.base_url, day),
        {"adjusted": flag(adjusted)},
        decode=decode_grouped,
        guard=UnseenNextUrl(MAX_PAGES, "grouped daily"),
        spent=spent,
        check=AdjustedAsAsked(adjusted),
    )
    frames = [page.bars for page in pages if page.bars.height]
    if not frames:
        return pl.DataFrame(schema=BAR_SCHEMA)
    raw = pl.concat(frames)
    stray = int((session_dates(raw) != day).sum())
    if stray:  # never store another day's bars under this date
        raise ProtocolError(f"{stray} grouped bars outside {day}", error_class="out_of_range")
    return symbol_bars(raw)[0]


def layout(key: str, period_start: dt.date) -> str:
    day = period_start
    return f"{NAME}/year={day.year:04d}/month={day.month:02d}/date={day.isoformat()}/{PART_NAME}"


SPEC = DatasetSpec(
    name=NAME,
    grain="date",
    summary="grouped_daily (a unit per trading day, every symbol; no universe)",
    schema=BAR_SCHEMA,
    layout=layout,
    stand_in="/v2/aggs/grouped/locale/us/market/stocks/{date}: every listing's /range day bar at "
    "16:00 ET; nothing on weekends and NYSE holidays; Defects.grouped_* disagree on purpose",
    fetch_unit=fetch,
    quality_checks=CHECKS,
    adjustable=True,
    bars=True,
)

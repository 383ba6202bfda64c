"""Day files of the provider's flat files (`run --source flatfiles`): one unit per NYSE
trading day, keyed by the market like grouped daily, whose file is the day's bars of the
universe's symbols ("staged": sorted by ticker, in the stored bar schema, vwap null).
`minute_files` feed the `minute` units (ticker x month), `day_files` the `day` units
(ticker x year), which are built from them once every trading day of their period is
read (`polyledger/flatfiles/`).

    minute_files/year=2024/month=03/date=2024-03-08/part.parquet

Their units are never fetched from the REST API: a plain `run` leaves them alone.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from polyledger.bars import BAR_SCHEMA
from polyledger.datasets.spec import PART_NAME, DatasetSpec
from polyledger.errors import InputError

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

MINUTE_FILES = "minute_files"
DAY_FILES = "day_files"
# the bar dataset a day dataset feeds -> the day dataset
ROUTES = {"minute": MINUTE_FILES, "day": DAY_FILES}
# the day dataset -> its objects' folder in the bucket, under the market's
OBJECTS = {MINUTE_FILES: "minute_aggs_v1", DAY_FILES: "day_aggs_v1"}
MARKET_PREFIX = "us_stocks_sip"


def object_key(day_dataset: str, day: dt.date) -> str:
    """`us_stocks_sip/minute_aggs_v1/2024/03/2024-03-08.csv.gz`"""
    return f"{MARKET_PREFIX}/{OBJECTS[day_dataset]}/{day.year:04d}/{day.month:02d}/{day.isoformat()}.csv.gz"


def _not_by_rest(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    raise InputError(f"{unit.dataset} units are read from flat files: `polyledger run --source flatfiles`")


def _layout(name: str):  # type: ignore[no-untyped-def]
    def layout(key: str, period_start: dt.date) -> str:
        day = period_start
        return f"{name}/year={day.year:04d}/month={day.month:02d}/date={day.isoformat()}/{PART_NAME}"

    return layout


def _spec(name: str, feeds: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        grain="date",
        summary=f"{name} (a flat file per trading day, staged for the {feeds} units; --source flatfiles)",
        schema=BAR_SCHEMA,
        layout=_layout(name),
        stand_in=f"flat files on S3 (polyledger/testing/flatfiles.py): {OBJECTS[name]} gzip CSVs",
        fetch_unit=_not_by_rest,
        bars=True,
    )


MINUTE_SPEC = _spec(MINUTE_FILES, "minute")
DAY_SPEC = _spec(DAY_FILES, "day")

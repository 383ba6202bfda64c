"""The synthetic market as the provider's flat files, in any S3 endpoint (moto in server
mode for the tests and the bench): one gzip CSV per day and kind, columns
`ticker,volume,open,close,high,low,window_start,transactions` (`window_start` in epoch
nanoseconds, no vwap), rows sorted by ticker then time, as published.

Defects on purpose: a day left out (`missing`) or published with its header only
(`emptied`), a ticker's first bar of a day written twice (`duplicated`) or with a field
left empty (`blank`), and an object replaced after publication (`replace_day`: a new ETag).
Which days are published is the caller's choice (the provider publishes trading days only,
the days the synthetic market trades; a holiday's file would hold no row).
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from polyledger.testing.market import SyntheticMarket, et_midnight_ms

PREFIX = "us_stocks_sip"
FOLDERS = {"minute": "minute_aggs_v1", "day": "day_aggs_v1"}


def object_key(kind: str, day: dt.date) -> str:
    return f"{PREFIX}/{FOLDERS[kind]}/{day.year:04d}/{day.month:02d}/{day.isoformat()}.csv.gz"


@dataclass(frozen=True)
class FlatDefects:
    missing: tuple[dt.date, ...] = ()  # days not published
    duplicated: tuple[tuple[dt.date, str], ...] = ()  # (day, ticker): its first bar twice
    blank: tuple[tuple[dt.date, str, str], ...] = ()  # (day, ticker, column): its first bar's field empty
    emptied: tuple[dt.date, ...] = ()  # days published with the header and no row


def day_rows(market: SyntheticMarket, kind: str, day: dt.date, tickers: Iterable[str]) -> pl.DataFrame:
    """The day's rows of `tickers` in the flat files' columns (raw: never adjusted)."""
    start, end = et_midnight_ms(day), et_midnight_ms(day + dt.timedelta(days=1))
    fetch = market.minute_bars if kind == "minute" else market.day_bars
    frames = []
    for ticker in sorted(tickers):
        bars = fetch(ticker, start, end, adjusted=False)
        if bars.height:
            frames.append(
                bars.select(
                    pl.lit(ticker).alias("ticker"),
                    pl.col("v").alias("volume"),
                    pl.col("o").alias("open"),
                    pl.col("c").alias("close"),
                    pl.col("h").alias("high"),
                    pl.col("l").alias("low"),
                    (pl.col("t") * 1_000_000).alias("window_start"),
                    pl.col("n").alias("transactions"),
                )
            )
    if not frames:
        return pl.DataFrame(
            schema={
                "ticker": pl.String,
                "volume": pl.Float64,
                "open": pl.Float64,
                "close": pl.Float64,
                "high": pl.Float64,
                "low": pl.Float64,
                "window_start": pl.Int64,
                "transactions": pl.Int64,
            }
        )
    return pl.concat(frames)


def gzip_csv(rows: pl.DataFrame) -> bytes:
    return gzip.compress(rows.write_csv().encode(), compresslevel=6)


def s3_client(endpoint: str, key_id: str = "test", secret: str = "test") -> Any:
    """A botocore S3 client for `endpoint` (path-style, as moto serves it)."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def publish(
    client: Any,
    bucket: str,
    market: SyntheticMarket,
    days: Iterable[dt.date],
    tickers: Iterable[str],
    *,
    kinds: Iterable[str] = ("minute", "day"),
    defects: FlatDefects = FlatDefects(),
) -> dict[str, str]:
    """Upload the days' files (creating the bucket); {key: ETag} of what was uploaded."""
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    tickers = sorted(tickers)
    etags = {}
    for day in days:
        if day in defects.missing:
            continue
        for kind in kinds:
            rows = day_rows(market, kind, day, tickers)
            for when, ticker in defects.duplicated:
                if when == day:
                    first = rows.with_row_index("_i").filter(pl.col("ticker") == ticker).head(1)
                    if first.height:
                        at = int(first.get_column("_i")[0])
                        rows = pl.concat([rows.slice(0, at + 1), rows.slice(at, rows.height - at)])
            for when, ticker, column in defects.blank:
                if when == day:
                    indexed = rows.with_row_index("_i")
                    first = indexed.filter(pl.col("ticker") == ticker).get_column("_i").min()
                    field = pl.when(pl.col("_i") == first).then(None).otherwise(pl.col(column))
                    rows = indexed.with_columns(field.alias(column)).drop("_i")
            if day in defects.emptied:
                rows = rows.clear()
            key = object_key(kind, day)
            answer = client.put_object(Bucket=bucket, Key=key, Body=gzip_csv(rows))
            etags[key] = answer["ETag"].strip('"')
    return etags


def replace_day(
    client: Any,
    bucket: str,
    market: SyntheticMarket,
    kind: str,
    day: dt.date,
    tickers: Iterable[str],
    ticker: str,
) -> str:
    """Publish the day again with `ticker`'s first bar's close and high raised by 1 (as a
    corrected file would): a new object, a new ETag (returned)."""
    rows = day_rows(market, kind, day, tickers).with_row_index("_i")
    first = rows.filter(pl.col("ticker") == ticker).get_column("_i")[0]
    hit = pl.col("_i") == first
    rows = rows.with_columns(
        close=pl.when(hit).then(pl.col("close") + 1).otherwise(pl.col("close")),
        high=pl.when(hit).then(pl.max_horizontal("high", pl.col("close") + 1)).otherwise(pl.col("high")),
    ).drop("_i")
    answer = client.put_object(Bucket=bucket, Key=object_key(kind, day), Body=gzip_csv(rows))
    return answer["ETag"].strip('"')

"""Research readers on one core: the bar builders' speed, and what adjusting on read costs.

    python bench/readers.py [--years 4] [--repeat 5]

1. Dollar bars: minute bars per second through `information_bars` (fixed threshold, and
   bars_per_day=50 from the 20 past sessions), on an in-memory frame of one dense ticker
   (960 minute bars a session, stand-in values).
2. `dl.bars(adjust=...)` against a plain read of the same selection, same run: the raw
   demo (`run_demo(adjusted=False)`: 13 tickers, one split, one dividend), minute and day
   bars of every ticker, collected; the median of `--repeat` reads each, as a ratio.
POLARS_MAX_THREADS=1 is set before polars loads: one core.
"""

from __future__ import annotations

import os

os.environ["POLARS_MAX_THREADS"] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402
from rich.console import Console  # noqa: E402

import polyledger  # noqa: E402
from polyledger.demo import run_demo  # noqa: E402
from polyledger.infobars import information_bars  # noqa: E402
from polyledger.testing import Listing, SyntheticMarket  # noqa: E402
from polyledger.testing.market import et_midnight_ms  # noqa: E402


def dense_minutes(years: int) -> pl.DataFrame:
    market = SyntheticMarket([Listing("DENSE", bars_per_day=960)], seed=1)
    start = dt.date(2020, 1, 1)
    raw = market.minute_bars("DENSE", et_midnight_ms(start), et_midnight_ms(dt.date(2020 + years, 1, 1)))
    return raw.select(
        pl.lit("DENSE").alias("ticker"),
        pl.lit("S").alias("security_id"),
        pl.col("t").cast(pl.Datetime("ms", "UTC")).alias("timestamp"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").alias("volume"),
        pl.col("vw").alias("vwap"),
        pl.col("n").alias("transactions"),
    )


def timed(work, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of `repeat` runs (after one warm-up)."""
    work()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"polars threads: {pl.thread_pool_size()}")

    frame = dense_minutes(args.years)
    daily = frame.group_by(pl.col("timestamp").dt.date()).agg((pl.col("vwap") * pl.col("volume")).sum())
    fixed = float(daily[:, 1].mean()) / 50  # about 50 bars a day
    for label, options in (
        ("fixed threshold", {"threshold": fixed}),
        ("bars_per_day=50", {"bars_per_day": 50}),
    ):
        seconds = timed(lambda o=options: information_bars(frame, "dollar", **o), args.repeat)
        bars = information_bars(frame, "dollar", **options)
        print(
            f"dollar bars, {label}: {frame.height:,} minute bars -> {bars.height:,} bars in {seconds:.3f} s: "
            f"{frame.height / seconds / 1e6:.2f} M minute bars/s"
        )

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        run_demo(folder, workers=4, console=Console(quiet=True), adjusted=False)
        warnings.simplefilter("ignore")  # the demo's failed months, on purpose
        with polyledger.open(folder / "ledger.db", folder / "data") as dl:
            for dataset in ("minute", "day"):
                rows = dl.bars(dataset).collect().height
                plain = timed(lambda d=dataset: dl.bars(d).collect(), args.repeat)
                for adjust in ("splits", "splits+dividends"):
                    adjusted = timed(lambda d=dataset, a=adjust: dl.bars(d, adjust=a).collect(), args.repeat)
                    print(
                        f"{dataset} bars ({rows:,}): plain read {plain * 1e3:.1f} ms, adjust={adjust!r} "
                        f"{adjusted * 1e3:.1f} ms: {adjusted / plain:.2f}x"
                    )


if __name__ == "__main__":
    main()

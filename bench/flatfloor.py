"""The flat-file route's floor: what one day file costs before polyledger's own work, per
million bars of the universe, and the full job it bounds on this machine.

    python bench/flatfloor.py [--tickers 300] [--others 1.0] [--repeat 20]

One day file of bench/flatfiles.py's dense sample (the universe's tickers plus `--others`
times as many symbols outside it, as the real files hold the whole market), in memory:
gunzip (ISA-L, streamed as a run reads it), the CSV read and filter to the universe
(`stage.read_day`), the read of its ticker column alone (what skipping the other rows by
ticker would cost at least), and the unit files the bars become (zstd, at the full job's
mean unit size). Each figure is this process's CPU (user + sys, every thread), the median
of `--repeat` runs. The floor is gunzip + read + the unit files: what any design reading
these files and writing these files pays, staging and shaping aside.

Then the staging formats (not in the floor): the day's universe bars written as the route
stages them (Parquet, lz4, small row groups) and as Arrow IPC (lz4, uncompressed), with
their bytes per bar: what a staging read without decoding would cost to write and keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flatfiles import _market  # noqa: E402
from scale import FULL_TICKERS, FULL_YEARS  # noqa: E402

FULL_BARS = 4.34e9  # bench/flatfiles.py's full job (3,107 tickers x 22 years of minute bars)
MEAN_UNIT = 5_290  # bars in a ticker-month of the full job, on average


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _median_cpu(work: Callable[[], object], repeat: int) -> float:
    work()  # warm
    spent = []
    for _ in range(repeat):
        began = _cpu()
        work()
        spent.append(_cpu() - began)
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=300)
    parser.add_argument("--others", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import polars as pl
    from isal import igzip

    from polyledger.flatfiles.stage import COLUMNS, read_day
    from polyledger.storage import BarStore
    from polyledger.testing.flatfiles import day_rows, gzip_csv

    day = dt.date(2020, 1, 15)
    market, universe, others = _market(args.tickers, dt.date(2020, 1, 1), dt.date(2020, 1, 31), args.others)
    body = gzip_csv(day_rows(market, "minute", day, universe + others))
    with tempfile.TemporaryDirectory() as scratch:
        csv = Path(scratch) / "day.csv"

        def gunzip() -> None:
            with igzip.IGzipFile(fileobj=io.BytesIO(body)) as unzipped, open(csv, "wb") as out:
                shutil.copyfileobj(unzipped, out, 1 << 20)

        gunzip()
        tickers = frozenset(universe)
        staged, total = read_day(csv, tickers, day)
        bars = staged.height
        store = BarStore(Path(scratch) / "data")
        # a unit of the mean size: the busiest ticker's day, repeated on following days
        busiest = staged.get_column("ticker").value_counts(sort=True).item(0, "ticker")
        session = staged.filter(pl.col("ticker") == busiest)
        copies = -(-MEAN_UNIT // session.height)
        unit = pl.concat(
            [session.with_columns(pl.col("timestamp") + dt.timedelta(days=k)) for k in range(copies)]
        ).head(MEAN_UNIT)

        def encode() -> None:
            store.encode_unit("minute", busiest, day, unit, adjusted=False)

        per_m = {
            "gunzip (ISA-L, streamed to a file)": _median_cpu(gunzip, args.repeat) / bars * 1e6,
            "CSV read + filter (read_day)": _median_cpu(lambda: read_day(csv, tickers, day), args.repeat)
            / bars
            * 1e6,
            "unit files (zstd, mean unit)": _median_cpu(encode, args.repeat) / unit.height * 1e6,
        }
        ticker_only = (
            _median_cpu(lambda: pl.read_csv(csv, columns=["ticker"], schema_overrides=COLUMNS), args.repeat)
            / bars
            * 1e6
        )
        formats = {
            "Parquet lz4 (as staged)": lambda out: staged.write_parquet(
                out, compression="lz4", statistics=True, row_group_size=16_384
            ),
            "Arrow IPC lz4": lambda out: staged.write_ipc(out, compression="lz4"),
            "Arrow IPC uncompressed": lambda out: staged.write_ipc(out, compression="uncompressed"),
        }
        staging = {}
        for name, write in formats.items():
            target = Path(scratch) / "staged"
            staging[name] = (
                _median_cpu(lambda write=write, target=target: write(target), args.repeat) / bars * 1e6,
                target.stat().st_size / bars,
            )
    cores = os.cpu_count() or 1
    print(f"day file: {total:,} rows, {bars:,} of the universe ({args.tickers} tickers, "
          f"--others {args.others:g}), {len(body) / 1e6:.1f} MB gzip")  # fmt: skip
    for name, value in per_m.items():
        print(f"  {name:38s} {value:5.2f} CPU s per M universe bars")
    print(f"  {'(the ticker column alone)':38s} {ticker_only:5.2f}")
    floor = sum(per_m.values())
    hours = FULL_BARS / 1e6 * floor / cores / 3600
    print(f"floor {floor:.2f} CPU s per M bars -> the full job ({FULL_TICKERS:,} tickers x "
          f"{FULL_YEARS} years, {FULL_BARS / 1e9:.2f} G bars) >= {hours:.2f} h on {cores} cores, "
          "staging and shaping aside")  # fmt: skip
    print("staging a day (not in the floor):")
    for name, (cost, size) in staging.items():
        print(f"  {name:38s} {cost:5.2f} CPU s per M universe bars, {size:5.1f} bytes a bar")


if __name__ == "__main__":
    main()

"""Decode + write throughput of one core, beside the previous system's approach.

    python bench/decode.py [--pages 20]

Ours: polars reads each 50,000-bar page with an explicit schema (no per-bar Python
objects), the unit's bars are kept, and the unit is written once (zstd Parquet).
Baseline, measured in the same run: `json.loads` to a list of dicts, `pl.from_dicts`,
and per page: read the month file back, concat, dedupe, sort, rewrite it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl

from polyledger.bars import bars_for_unit
from polyledger.periods import et_date_of_ms
from polyledger.polygon.aggs import decode_aggregates
from polyledger.storage import BarStore
from polyledger.testing import Listing, SyntheticMarket
from polyledger.testing.market import et_midnight_ms

PAGE = 50_000


def make_pages(count: int) -> tuple[list[bytes], dt.date, dt.date]:
    """`count` pages of a dense ticker, as the API sends them."""
    market = SyntheticMarket([Listing("DENSE", bars_per_day=960)], seed=1)
    start = dt.date(2020, 1, 1)
    bars = market.minute_bars("DENSE", et_midnight_ms(start), et_midnight_ms(dt.date(2030, 1, 1)))
    pages = []
    for index in range(count):
        rows = bars.slice(index * PAGE, PAGE).to_dicts()
        results = [{k: v for k, v in row.items() if v is not None} for row in rows]
        pages.append(
            orjson.dumps(
                {
                    "ticker": "DENSE",
                    "status": "OK",
                    "adjusted": True,
                    "request_id": "x",
                    "resultsCount": len(results),
                    "results": results,
                }
            )
        )
    last = et_date_of_ms(bars.get_column("t")[count * PAGE - 1])
    return pages, start, last


def ours(pages: list[bytes], start: dt.date, end: dt.date, store: BarStore) -> tuple[float, float]:
    began = time.perf_counter()
    raws = [decode_aggregates(body).bars for body in pages]
    decoded = time.perf_counter() - began
    bars = bars_for_unit(pl.concat(raws), "DENSE", start, end)
    store.write_unit("minute", "DENSE", start, bars)
    return decoded, time.perf_counter() - began


def previous(pages: list[bytes], folder: Path) -> float:
    began = time.perf_counter()
    target = folder / "month.parquet"
    for body in pages:
        frame = pl.from_dicts(json.loads(body)["results"])
        frame = frame.with_columns(
            pl.from_epoch("t", time_unit="ms").dt.strftime("%Y-%m-%d %H:%M").alias("key")
        )
        if target.exists():
            frame = pl.concat([pl.read_parquet(target), frame], how="diagonal_relaxed")
        frame.unique(subset="key", keep="last").sort("t").write_parquet(target)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    pages, start, end = make_pages(args.pages)
    bars = args.pages * PAGE
    with tempfile.TemporaryDirectory() as scratch:
        store = BarStore(Path(scratch) / "ours")
        ours(pages[:1], start, end, store)  # warm up
        decode_s, total_s = ours(pages, start, end, store)
        baseline_s = previous(pages, Path(scratch))
    print(f"{args.pages} pages x {PAGE:,} bars = {bars:,} bars, one thread")
    print(f"ours, decode to Arrow: {bars / decode_s:,.0f} bars/s")
    print(f"ours, decode + keep + write once: {bars / total_s:,.0f} bars/s")
    print(f"previous approach (dicts + rewrite per page): {bars / baseline_s:,.0f} bars/s")
    print(f"speed-up: {baseline_s / total_s:.1f}x")


if __name__ == "__main__":
    main()

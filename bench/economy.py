"""Request economy: requests used / the lower bound, for 50 tickers x 10 years of sparse
minute bars against the stand-in (its own process, no faults).

    python bench/economy.py [--tickers 50] [--years 10] [--bars-per-day 150]

Lower bound: for each ticker ceil(bars / 50,000), or 1 for a ticker with no bars. The
baseline in the same run is one request per month (what a unit-per-request client needs).
Target: <= 1.2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time

from scratch_run import scratch_run
from standin import standin

from polyledger.fetch.runner import RunOptions
from polyledger.testing import Listing, SyntheticMarket
from polyledger.testing.market import et_midnight_ms

KEY = "economy-key"
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--bars-per-day", type=int, default=150)
    args = parser.parse_args()
    tickers = [f"E{i:03d}" for i in range(args.tickers)]
    start, end = dt.date(2014, 1, 1), dt.date(2014 + args.years - 1, 12, 31)

    market = SyntheticMarket([Listing(t, bars_per_day=args.bars_per_day) for t in tickers], seed=SEED)
    span = (et_midnight_ms(start), et_midnight_ms(end + dt.timedelta(days=1)))
    bars = {t: market.minute_bars(t, *span).height for t in tickers}
    lower_bound = sum(max(1, math.ceil(n / 50_000)) for n in bars.values())

    with standin(tickers, key=KEY, bars_per_day=args.bars_per_day, seed=SEED) as url:
        with scratch_run(url, KEY, tickers, start, end, RunOptions(workers=8, rate=100_000)) as (
            run,
            planned,
        ):
            began = time.perf_counter()
            report = run.execute()
            elapsed = time.perf_counter() - began
            stored = run.ledger.query("SELECT sum(rows) AS n FROM units")[0].n
    assert stored == sum(bars.values()), "the download is not the truth"
    used = report.requests_sent
    print(
        f"{args.tickers} tickers x {args.years} years, {sum(bars.values()):,} bars, "
        f"{planned.units_in_plan:,} units"
    )
    print(f"requests used: {used:,}; lower bound: {lower_bound:,}; one per month: {planned.units_in_plan:,}")
    print(
        f"used / lower bound: {used / lower_bound:.2f} "
        f"(one request per month: {planned.units_in_plan / lower_bound:.1f})"
    )
    print(f"wall time {elapsed:.1f} s, {report.stats.settled / elapsed:.0f} units/s")


if __name__ == "__main__":
    main()

"""Soak: a long run (>= 20,000 units) against the stand-in at full speed keeps RSS flat.

    python bench/soak.py [--tickers 250] [--months 84] [--workers 16]

The stand-in server runs in its own process, so the figures are the client's alone.
Prints RSS after the first 10% of units (warm), at 50% and at the end, the peak, and
the ratio end / warm: flat means close to 1.0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time

import psutil
from scratch_run import months_from, scratch_run
from standin import standin

from polyledger.fetch.runner import RunOptions

KEY = "soak-key"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=250)
    parser.add_argument("--months", type=int, default=84)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--bars-per-day", type=int, default=3)
    args = parser.parse_args()

    tickers = [f"S{i:04d}" for i in range(args.tickers)]
    me = psutil.Process()
    samples: list[tuple[int, int]] = []  # (units settled, rss)
    peak = 0
    with standin(tickers, key=KEY, bars_per_day=args.bars_per_day) as url:
        start = dt.date(2017, 1, 1)
        options = RunOptions(workers=args.workers, rate=100_000)
        with scratch_run(url, KEY, tickers, start, months_from(start, args.months), options) as (
            run,
            planned,
        ):
            stop = threading.Event()

            def record() -> None:
                nonlocal peak
                rss = me.memory_info().rss
                peak = max(peak, rss)
                samples.append((run.stats.settled, rss))

            def sample() -> None:
                while not stop.wait(0.25):
                    record()

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            began = time.perf_counter()
            report = run.execute()
            elapsed = time.perf_counter() - began
            stop.set()
            sampler.join()
            record()  # the end state, also for a run shorter than one sampling interval

    total = planned.units_in_plan

    def rss_at(share: float) -> float:
        target = share * total
        return next((rss for settled, rss in samples if settled >= target), samples[-1][1]) / 2**20

    warm, middle, final = rss_at(0.10), rss_at(0.50), samples[-1][1] / 2**20
    print(
        f"units: {report.stats.settled:,} of {total:,} ({report.outcome}), requests: {report.requests_sent:,}"
    )
    print(f"time: {elapsed:.1f} s, {report.stats.settled / elapsed:.0f} units/s, workers {args.workers}")
    print(
        f"RSS MB: warm (10%) {warm:.0f}, middle (50%) {middle:.0f}, end {final:.0f}, peak {peak / 2**20:.0f}"
    )
    print(f"end / warm: {final / warm:.2f}")


if __name__ == "__main__":
    main()

"""Throughput at a wide open server: no rate limit, 5 ms added to every response.

    python bench/throughput.py [--tickers 100] [--months 60] [--workers 16] [--latency 0.005]

Sparse monthly minute data (a few bars a day, as for thin small caps), the stand-in in its
own process. Prints units settled per second, requests per second, and the CPU seconds
the client and the stand-in each used, so the figure says which side is the bottleneck
on a 2-core machine where both share the cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import psutil
from scratch_run import months_from, scratch_run
from standin import standin

from polyledger.fetch.runner import RunOptions

KEY = "throughput-key"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--bars-per-day", type=int, default=3)
    args = parser.parse_args()

    tickers = [f"W{i:04d}" for i in range(args.tickers)]
    me = psutil.Process()
    extra = ("--latency", str(args.latency))
    with standin(tickers, key=KEY, bars_per_day=args.bars_per_day, extra=extra) as url:
        server = next(child for child in me.children() if "serve" in " ".join(child.cmdline()))
        start = dt.date(2015, 1, 1)
        options = RunOptions(workers=args.workers, rate=100_000)
        with scratch_run(url, KEY, tickers, start, months_from(start, args.months), options) as (
            run,
            planned,
        ):
            client_cpu, server_cpu = cpu_seconds(me), cpu_seconds(server)
            began = time.perf_counter()
            report = run.execute()
            elapsed = time.perf_counter() - began
            client_cpu, server_cpu = cpu_seconds(me) - client_cpu, cpu_seconds(server) - server_cpu

    settled = report.stats.settled
    print(f"units: {settled:,} of {planned.units_in_plan:,} ({report.outcome}), workers {args.workers}")
    print(f"latency per response: {args.latency * 1000:.0f} ms, requests: {report.requests_sent:,}")
    print(
        f"time: {elapsed:.1f} s -> {settled / elapsed:,.0f} units/s, "
        f"{report.requests_sent / elapsed:,.1f} req/s"
    )
    print(
        f"CPU: client {client_cpu:.1f} s ({client_cpu / settled * 1000:.2f} ms/unit), "
        f"stand-in {server_cpu:.1f} s, of {elapsed * psutil.cpu_count():.0f} core-seconds available"
    )


if __name__ == "__main__":
    main()

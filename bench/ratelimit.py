"""Rate control against a server-side limit: share of 429 answers, and productive
requests per second as a share of the limit R, for one process and for two and three
processes sharing one key (as several hosts would).

    python bench/ratelimit.py [--limit 20] [--tickers 1200] [--processes 1,2,3]

Each process starts at twice R (`--rate 2R`) and must find the limit itself; the 429 share
is printed for the whole run and for the time after its first seconds. Targets (issue
#4): 429 share <= 2%, productive rate / R >= 0.9.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import threading
import time

from scratch_run import scratch_run
from standin import standin

from polyledger.fetch.runner import RunOptions

KEY = "ratelimit-key"
WARMUP_SECONDS = 10.0  # the first seconds, where a run starting at 2R finds the limit
SAMPLE_SECONDS = 5.0  # how often the limiter's rate is sampled


def child(url: str, tickers: list[str], rate: float) -> dict:
    """One process: plan one month per ticker (one request each) and run."""
    march = (dt.date(2023, 3, 1), dt.date(2023, 3, 31))
    with scratch_run(url, KEY, tickers, *march, RunOptions(workers=8, rate=rate)) as (run, _planned):
        at_warmup: list[tuple[int, int]] = []  # (requests, 429s) once the first seconds are over

        rates: list[float] = []  # the limiter's rate every SAMPLE_SECONDS: how hosts share the key

        def sample() -> None:
            while not finished.wait(SAMPLE_SECONDS):
                rates.append(round(run.limiter.rate, 1))
                if not at_warmup and len(rates) * SAMPLE_SECONDS >= WARMUP_SECONDS:
                    at_warmup.append((run.client.requests_sent, run.limiter.throttled))

        finished = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.perf_counter()
        report = run.execute()
        elapsed = time.perf_counter() - began
        finished.set()
        sampler.join()
    warm_requests, warm_throttled = at_warmup[0] if at_warmup else (report.requests_sent, report.throttled)
    return {
        "requests": report.requests_sent,
        "throttled": report.throttled,
        "ok": report.requests_sent - report.throttled,
        "elapsed": elapsed,
        "outcome": report.outcome,
        "steady_requests": report.requests_sent - warm_requests,
        "steady_throttled": report.throttled - warm_throttled,
        "rates": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=20.0)
    parser.add_argument("--tickers", type=int, default=1200)
    parser.add_argument("--processes", default="1,2,3", help="process counts to measure, e.g. 1,2,3")
    parser.add_argument("--child", nargs=2, metavar=("URL", "TICKERS"))
    args = parser.parse_args()
    if args.child:
        url, names = args.child
        print(json.dumps(child(url, names.split(","), 2 * args.limit)))
        return
    counts = [int(n) for n in args.processes.split(",")]
    tickers = [f"R{i:05d}" for i in range(sum(counts) * args.tickers)]
    with standin(tickers, key=KEY, bars_per_day=2, extra=("--rate-limit", str(args.limit))) as url:
        first = 0
        for processes in counts:
            # each process gets `tickers` one-request units of its own (n processes: n times the work)
            command = [sys.executable, __file__, "--limit", str(args.limit), "--child", url]
            started = [
                subprocess.Popen(
                    [*command, ",".join(tickers[first + i * args.tickers : first + (i + 1) * args.tickers])],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]
            results = [json.loads(p.communicate()[0]) for p in started]
            first += processes * args.tickers
            requests = sum(r["requests"] for r in results)
            throttled = sum(r["throttled"] for r in results)
            steady = sum(r["steady_requests"] for r in results)
            steady_throttled = sum(r["steady_throttled"] for r in results)
            # the key's budget is used while any process still has work: the last one to finish sets the time
            productive = sum(r["ok"] for r in results) / max(r["elapsed"] for r in results)
            finished = sorted(r["elapsed"] for r in results)
            print(
                f"{processes} process(es), R = {args.limit:g}/s, start at {2 * args.limit:g}/s each: "
                f"{requests} requests in {finished[-1]:.0f} s (first process done at {finished[0]:.0f} s), "
                f"429 share {throttled / requests:.1%} "
                f"(after the first {WARMUP_SECONDS:.0f} s: {steady_throttled / max(steady, 1):.1%}), "
                f"productive {productive:.1f}/s = {productive / args.limit:.2f} R"
            )
            if processes > 1:
                each = ", ".join(
                    f"{r['ok']} ok + {r['throttled']} 429 in {r['elapsed']:.0f} s" for r in results
                )
                print(f"  each process: {each}")
                for r in results:
                    print(f"  rate every 5 s: {r['rates']}")


if __name__ == "__main__":
    main()

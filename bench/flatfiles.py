"""The flat-file route against the REST route on the sample of bench/scale.py: requests,
bytes and client CPU per million bars, peak RSS, and the full job (3,107 tickers,
2004-2025, minute bars) projected for both routes on this machine.

    python bench/flatfiles.py [--tickers 40] [--years 4] [--others 1.0] [--workers 2] [--processes 1]

The stand-ins: the REST API in-process (StandInServer), the flat files in moto's S3 (a
process of its own), published before anything is timed. Each route runs in a child
process of its own, so its CPU (user + sys) and peak RSS are its alone. The day files
hold the sample's tickers plus `--others` times as many symbols outside the universe, as
the real files hold the whole market (parsed, then filtered out).

Projection: CPU per million bars times the full job's bars over the cores, against
(REST) the requests at 100/s, or (flat files) the documented download (~11,000 objects,
`--full-gb`, at `--mbps`); the slower of the two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import FULL_TICKERS, FULL_YEARS, RATE, sample_listings  # noqa: E402

KEY = "flat-bench-key"
BUCKET = "flatfiles"


def _span(args: argparse.Namespace) -> tuple[dt.date, dt.date]:
    if args.months:  # the first N months of 2020
        after = dt.date(2020 + args.months // 12, args.months % 12 + 1, 1)
        return dt.date(2020, 1, 1), after - dt.timedelta(days=1)
    return dt.date(2020, 1, 1), dt.date(2020 + args.years - 1, 12, 31)


def _market(tickers: int, first: dt.date, last: dt.date, others: float):  # type: ignore[no-untyped-def]
    from polyledger.testing import Listing, SyntheticMarket

    universe = sample_listings(tickers, first, last, seed=2026)
    extra = [
        Listing(f"X{i:04d}", bars_per_day=item.bars_per_day)
        for i, item in enumerate(sample_listings(int(tickers * others), first, last, seed=7))
    ]
    return (
        SyntheticMarket([*universe, *extra], seed=3),
        [x.ticker for x in universe],
        [x.ticker for x in extra],
    )


def _child(args: argparse.Namespace) -> None:
    """One route, in this process: plan, run, print the figures as JSON."""
    from polyledger.ledger import Ledger
    from polyledger.plan import plan

    first, last = _span(args)
    _, universe, _ = _market(args.tickers, first, last, args.others)
    scratch = Path(args.scratch)
    # a run with nothing to do first: imports, clients and a run's set-up are paid once per
    # run whatever its size, so they are measured apart, not charged to the bars
    idle = _cpu()
    _route(args, scratch / f"{args.route}-idle.db", scratch / f"{args.route}-idle")
    startup = _cpu() - idle
    ledger_path, data = scratch / f"{args.route}.db", scratch / f"{args.route}-data"
    with Ledger(ledger_path) as ledger:
        plan(ledger, universe, "minute", first, last)
    began_cpu, began = _cpu(), time.perf_counter()
    _route(args, ledger_path, data)
    wall, cpu = time.perf_counter() - began, _cpu() - began_cpu
    with Ledger(ledger_path) as ledger:
        bars = ledger.query("SELECT coalesce(sum(rows), 0) AS n FROM units WHERE dataset = 'minute'")[0].n
        spent = ledger.query(
            "SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(bytes), 0) AS bytes "
            "FROM unit_attempts"
        )[0]
        states = {r.state: r.n for r in ledger.query("SELECT state, count(*) AS n FROM units GROUP BY state")}
    # the process's peak, plus N times the largest child's under --processes N (a phase's
    # children end before the next phase's start: N at once at most): a bound, not a sample
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if args.processes > 1 else 0
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + args.processes * children_kb) / 1024
    print(json.dumps(dict(bars=bars, requests=spent.requests, bytes=spent.bytes, wall=wall, cpu=cpu,
                          startup=startup, peak_mb=peak_mb, states=states)))  # fmt: skip


def _route(args: argparse.Namespace, ledger_path: Path, data: Path) -> None:
    """One run of the route over the ledger's pending minute units."""
    from polyledger.fetch.runner import Run, RunOptions
    from polyledger.flatfiles.route import run_flatfiles
    from polyledger.flatfiles.source import FlatFilesConfig
    from polyledger.ledger import Ledger
    from polyledger.storage import BarStore

    Ledger(ledger_path).close()  # made (migrated) if new
    if args.route == "rest":
        with Ledger(ledger_path) as ledger:
            Run(
                ledger,
                BarStore(data),
                api_key=KEY,
                base_url=args.url,
                options=RunOptions(workers=8, rate=100_000, adjusted=False, datasets=("minute",)),
            ).execute()
    else:
        config = FlatFilesConfig("bench", "bench-secret", args.url, BUCKET)
        # children of --processes read the keys from the environment they inherit
        os.environ.update(POLYLEDGER_FLATFILES_KEY_ID="bench", POLYLEDGER_FLATFILES_SECRET="bench-secret")
        run_flatfiles(
            lambda run: run.execute(), str(ledger_path), str(data), datasets=("minute",), config=config,
            workers=args.workers, processes=str(args.processes),
        )  # fmt: skip


def _cpu() -> float:
    """This process's CPU and its ended children's (`--processes`)."""
    usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)  # a bench waiting for a server to listen: no result depends on it
    process.kill()
    raise SystemExit("moto server did not start")


def _run_child(route: str, url: str, scratch: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", route, "--url", url, "--scratch", scratch,
               "--tickers", str(args.tickers), "--years", str(args.years), "--others", str(args.others),
               "--workers", str(args.workers), "--months", str(args.months),
               "--processes", str(args.processes)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{route} child failed ({done.returncode}): {done.stderr[-3000:]}")
    out = done.stdout
    return json.loads(out.strip().splitlines()[-1])


def _sample(args: argparse.Namespace) -> dict:
    """Both routes over one sample: {route: figures}."""
    from polyledger.testing import StandInServer
    from polyledger.testing.flatfiles import publish, s3_client
    from polyledger.trading_days import trading_days

    first, last = _span(args)
    market, universe, others = _market(args.tickers, first, last, args.others)
    days = trading_days(first, last)
    moto, moto_url = _moto()
    try:
        began = time.perf_counter()
        publish(s3_client(moto_url), BUCKET, market, days, universe + others, kinds=("minute",))
        print(f"published {len(days)} minute day files ({len(universe)} + {len(others)} symbols) in "
              f"{time.perf_counter() - began:.0f} s (not timed)")  # fmt: skip
        with tempfile.TemporaryDirectory() as scratch, StandInServer(market, api_keys=(KEY,)) as server:
            figures = {"rest": _run_child("rest", server.url, scratch, args),
                       "flat": _run_child("flat", moto_url, scratch, args)}  # fmt: skip
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    print(
        "route | bars | requests | MB read | wall s | client CPU s | CPU s per M bars | set-up CPU s (apart) "
        "| peak RSS MB | states"
    )
    for name, f in figures.items():
        f["per_m"] = f["cpu"] / (f["bars"] / 1e6)
        print(f"{name} | {f['bars']:,} | {f['requests']:,} | {f['bytes'] / 1e6:,.1f} | {f['wall']:.1f} | "
              f"{f['cpu']:.1f} | {f['per_m']:.2f} | {f['startup']:.1f} | {f['peak_mb']:.0f} | "
              f"{f['states']}")  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=40)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument(
        "--months", type=int, default=0, help="instead of --years: the first N months of 2020"
    )
    parser.add_argument("--dense-tickers", type=int, default=300, help="the projection's sample: one month")
    parser.add_argument(
        "--others", type=float, default=1.0, help="symbols outside the universe per one inside"
    )
    parser.add_argument("--workers", type=int, default=2, help="the flat-file run's threads")
    parser.add_argument("--processes", type=int, default=1, help="the flat-file run's processes")
    parser.add_argument(
        "--full-gb", type=float, default=30.0, help="the full job's minute files, GB compressed"
    )
    parser.add_argument("--mbps", type=float, default=50.0, help="download bandwidth, MB/s")
    parser.add_argument("--dense-only", action="store_true", help="the projection's sample only")
    parser.add_argument("--child", choices=("rest", "flat"), dest="route")
    parser.add_argument("--url")
    parser.add_argument("--scratch")
    args = parser.parse_args()
    if args.route:
        _child(args)
        return
    if not args.dense_only:
        print(f"== the sample of bench/scale.py: {args.tickers} tickers x {args.months or args.years} "
              f"{'months' if args.months else 'years'}")  # fmt: skip
    # --dense-only: the projection alone, with the 40 x 4 sample's REST figures of 2026-12-01
    sample = _sample(args) if not args.dense_only else {"rest": {"bars": 10_150_131, "requests": 506}}
    rest = sample["rest"]
    ticker_years = args.tickers * (args.months / 12 if args.months else args.years)
    print(f"== the projection's sample: {args.dense_tickers} tickers x 1 month (a day file's density "
          "weighs on the flat route's cost per bar)")  # fmt: skip
    dense = _sample(argparse.Namespace(**{**vars(args), "tickers": args.dense_tickers, "months": 1}))
    flat = dense["flat"]
    cores = os.cpu_count() or 1
    full_bars = rest["bars"] / ticker_years * FULL_TICKERS * FULL_YEARS
    rest_requests = rest["requests"] / ticker_years * FULL_TICKERS * FULL_YEARS
    rest_cpu_h = full_bars / 1e6 * dense["rest"]["per_m"] / cores / 3600
    rest_h = max(rest_requests / RATE / 3600, rest_cpu_h)
    flat_cpu_h = full_bars / 1e6 * flat["per_m"] / cores / 3600
    flat_net_h = args.full_gb * 1000 / args.mbps / 3600
    print(f"full job: {full_bars / 1e9:.2f} billion bars, {cores} cores")
    print(f"REST: {rest_requests:,.0f} requests -> {rest_requests / RATE / 3600:.2f} h at {RATE:g}/s; "
          f"CPU {rest_cpu_h:.2f} h -> {rest_h:.2f} h")  # fmt: skip
    print(f"flat files: ~11,000 objects, {args.full_gb:g} GB at {args.mbps:g} MB/s -> {flat_net_h:.2f} h, "
          f"CPU {flat_cpu_h:.2f} h -> {max(flat_net_h, flat_cpu_h):.2f} h (the slower: they overlap); "
          f"peak RSS {flat['peak_mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()

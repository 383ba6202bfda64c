"""The client's own end-to-end cost (HTTP, gunzip, decode, split into units, dedupe, Parquet
write, checksum, ledger), beside the official `massive` client on the same server in the
same run.

    python bench/endtoend.py [--tickers 20] [--months 36] [--bars-per-day 320]

The server runs in its own process and serves pages encoded before any client starts:
the stand-in's /range pages (its JSON, its next_url cursors) fetched once, gzip-compressed
and kept by request URL, so that serving costs a dictionary lookup and a socket write, and
the two clients' CPU figures are theirs alone. A request nobody predicted (a claim race
splitting a ticker's range) is fetched from the stand-in then and counted as a miss.

Each client runs in a process of its own; its CPU (user + sys, psutil, its children
included) and wall time are measured around the job only (not imports nor planning), its
peak RSS is the process's. The peer: `massive==2.9.1` (`pip install -e .[bench]`), as a
user would use it: `list_aggs` per ticker over the whole range, 8 threads, one Parquet
file per ticker-month written with polars.

The projection line applies the CPU seconds per million bars measured here to the full
job (3,107 tickers x 2004-2025 minute bars, its bars and requests taken from bench/scale.py's
sample in bench/RESULTS.md) at 100 requests/s on this machine's cores. Figures only; never
test assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

KEY = "endtoend-key"
START = dt.date(2022, 1, 1)
PAGE = 50_000
# the full job, from bench/scale.py's sample (bench/RESULTS.md, "Scale projection"):
# 10,150,131 bars and 231 requests over 40 tickers x 4 years, scaled to 3,107 x 22 years
SAMPLE_BARS, SAMPLE_REQUESTS, SAMPLE_TICKER_YEARS = 10_150_131, 231, 40 * 4
FULL_TICKER_YEARS = 3_107 * 22
FULL_BARS = SAMPLE_BARS / SAMPLE_TICKER_YEARS * FULL_TICKER_YEARS
FULL_REQUESTS = SAMPLE_REQUESTS / SAMPLE_TICKER_YEARS * FULL_TICKER_YEARS
RATE = 100.0


def last_day(start: dt.date, months: int) -> dt.date:
    """The last day of the `months`-th month from `start` (a first of the month)."""
    year, month = divmod(start.month - 1 + months, 12)
    return dt.date(start.year + year, month + 1, 1) - dt.timedelta(days=1)


def tickers_of(count: int) -> list[str]:
    return [f"E{index:03d}" for index in range(count)]


# --- the server: pre-encoded pages --------------------------------------------------------


def request_key(target: str) -> str:
    """A request's path and its query sorted (clients order parameters differently)."""
    parts = urlsplit(target)
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "apiKey")
    return parts.path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")


class PageServer:
    """Ready gzip bodies by request key; a miss is fetched from the stand-in behind it."""

    def __init__(self, standin_url: str, level: int, port: int = 0) -> None:
        import requests

        self.standin_url = standin_url
        self.level = level
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {KEY}", "Accept-Encoding": "identity"})
        self.pages: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.hits = self.misses = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _PageHandler)
        self.httpd.daemon_threads = True
        self.httpd.pages = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def encode(self, target: str) -> tuple[bytes, str | None]:
        """The stand-in's answer to `target`, next_url pointed here, gzip-compressed; and
        the next_url's target."""
        answer = self.http.get(self.standin_url + target, timeout=120)
        answer.raise_for_status()
        body = answer.content.replace(self.standin_url.encode(), self.url.encode())
        self.pages[request_key(target)] = gzip.compress(body, compresslevel=self.level)
        next_url = json.loads(body).get("next_url")
        if not next_url:
            return body, None
        parts = urlsplit(next_url)
        return body, parts.path + "?" + parts.query

    def preencode(self, tickers: list[str], first: dt.date, last: dt.date) -> int:
        """Every page of each ticker's whole range, as each client's first request asks it."""
        firsts = ("adjusted=true&sort=asc&limit=50000", f"limit={PAGE}")  # polyledger, massive
        for ticker in tickers:
            for query in firsts:
                target: str | None = f"/v2/aggs/ticker/{ticker}/range/1/minute/{first}/{last}?{query}"
                while target is not None and request_key(target) not in self.pages:
                    _, target = self.encode(target)
        return len(self.pages)

    def answer(self, target: str) -> bytes:
        key = request_key(target)
        with self.lock:
            page = self.pages.get(key)
            if page is not None:
                self.hits += 1
                return page
            self.misses += 1
        self.encode(target)
        return self.pages[key]


class _PageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        pages: PageServer = self.server.pages  # type: ignore[attr-defined]
        if self.path == "/_stats":
            return self._send(200, json.dumps({"hits": pages.hits, "misses": pages.misses}).encode(), {})
        if self.headers.get("Authorization", "") != f"Bearer {KEY}":
            return self._send(401, b'{"status":"ERROR","error":"Unknown API Key"}', {})
        if "gzip" not in self.headers.get("Accept-Encoding", ""):
            return self._send(406, b'{"status":"ERROR","error":"this bench serves gzip only"}', {})
        self._send(200, pages.answer(self.path), {"Content-Encoding": "gzip"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(args: argparse.Namespace) -> None:
    from polyledger.testing import Listing, StandInServer, SyntheticMarket

    tickers = tickers_of(args.tickers)
    market = SyntheticMarket([Listing(t, bars_per_day=args.bars_per_day) for t in tickers], seed=5)
    cache = Path(args.cache) if args.cache else None
    with StandInServer(market, api_keys=(KEY,)) as standin:
        pages = _cached(cache, standin.url, args)
        if pages is None:
            pages = PageServer(standin.url, args.gzip_level)
            pages.preencode(tickers, START, last_day(START, args.months))
            if cache is not None:
                port = pages.httpd.server_address[1]
                cache.write_bytes(pickle.dumps((_cache_key(args), port, pages.pages)))
        count = len(pages.pages)
        print(pages.url, count, sum(map(len, pages.pages.values())), flush=True)
        # stopped with SIGTERM; pages encoded on a miss join the cache, so the next bench's
        # clients are not timed beside the server encoding them
        signal.signal(signal.SIGTERM, _exit_on_term)
        try:
            pages.httpd.serve_forever()
        finally:
            if cache is not None and len(pages.pages) > count:
                port = pages.httpd.server_address[1]
                cache.write_bytes(pickle.dumps((_cache_key(args), port, pages.pages)))


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _cache_key(args: argparse.Namespace) -> tuple:
    return (args.tickers, args.months, args.bars_per_day, args.gzip_level)


def _cached(cache: Path | None, standin_url: str, args: argparse.Namespace) -> PageServer | None:
    """The pages a previous run encoded (`--cache FILE`: encoding takes most of a run's
    time), served on the port their next_urls name; None when there are none to use."""
    if cache is None or not cache.exists():
        return None
    key, port, pages = pickle.loads(cache.read_bytes())
    if key != _cache_key(args):
        return None
    try:
        server = PageServer(standin_url, args.gzip_level, port)
    except OSError:  # the port is taken now: encode again
        return None
    server.pages = pages
    return server


# --- the clients, each in its own process ---------------------------------------------------


def cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run_polyledger(args: argparse.Namespace, scratch: Path) -> tuple[int, dict]:
    from polyledger.fetch.runner import Run, RunOptions
    from polyledger.ledger import Ledger
    from polyledger.plan import plan
    from polyledger.storage import BarStore

    tickers = tickers_of(args.tickers)
    with Ledger(scratch / "ledger.db") as ledger:
        plan(ledger, tickers, "minute", START, last_day(START, args.months))
        run = Run(
            ledger,
            BarStore(scratch / "data"),
            api_key=KEY,
            base_url=args.url,
            options=RunOptions(workers=args.workers, rate=100_000),
        )
        measured = _measure(run.execute)
        report = measured.pop("result")
        if not report.ok:
            raise SystemExit(f"polyledger run did not finish: {report.outcome} {report.message}")
        bars = ledger.query("SELECT sum(rows) AS n FROM units")[0].n
        return bars, measured  # type: ignore[return-value]


def run_massive(args: argparse.Namespace, scratch: Path) -> tuple[int, dict]:
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl
    from massive import RESTClient

    client = RESTClient(KEY, base=args.url)
    first, last = START, last_day(START, args.months)

    def one_ticker(ticker: str) -> int:
        aggs = list(client.list_aggs(ticker, 1, "minute", first, last, limit=PAGE))
        frame = pl.DataFrame(
            {
                "timestamp": [a.timestamp for a in aggs],
                "open": [a.open for a in aggs],
                "high": [a.high for a in aggs],
                "low": [a.low for a in aggs],
                "close": [a.close for a in aggs],
                "volume": [a.volume for a in aggs],
                "vwap": [a.vwap for a in aggs],
                "transactions": [a.transactions for a in aggs],
                "otc": [a.otc for a in aggs],
            },
            schema_overrides={"volume": pl.Float64, "vwap": pl.Float64, "transactions": pl.Int64},
        ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
        local = pl.col("timestamp").dt.convert_time_zone("America/New_York")
        frame = frame.with_columns(year=local.dt.year(), month=local.dt.month())
        for (year, month), part in frame.partition_by(["year", "month"], as_dict=True).items():
            folder = scratch / "massive" / f"ticker={ticker}" / f"year={year}" / f"month={month:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            part.drop("year", "month").write_parquet(folder / "part.parquet")
        return len(aggs)

    def job() -> int:
        with ThreadPoolExecutor(args.workers) as pool:
            return sum(pool.map(one_ticker, tickers_of(args.tickers)))

    measured = _measure(job)
    return measured.pop("result"), measured  # type: ignore[return-value]


def _measure(action):  # type: ignore[no-untyped-def]
    profiler = _profiler()
    cpu, began = cpu_seconds(), time.perf_counter()
    result = action()
    measured = {"result": result, "wall": time.perf_counter() - began, "cpu": cpu_seconds() - cpu}
    if profiler is not None:  # stopped (and reaped) after the measurement: its CPU is not counted
        profiler.send_signal(signal.SIGINT)
        profiler.wait()
    return measured


def _profiler() -> subprocess.Popen | None:
    """py-spy recording this process's job when ENDTOEND_PYSPY names an output file
    (`--format` from ENDTOEND_PYSPY_FORMAT, e.g. raw for collapsed stacks; ENDTOEND_PYSPY_GIL
    set: where the interpreter's own time goes)."""
    output = os.environ.get("ENDTOEND_PYSPY")
    if not output:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(os.getpid()), "-o", output, "--threads", "--nonblocking"]
    if os.environ.get("ENDTOEND_PYSPY_GIL"):  # only the samples of the thread holding the GIL
        command.append("--gil")
    command += ["--format", os.environ.get("ENDTOEND_PYSPY_FORMAT", "flamegraph"), "--rate", "200"]
    profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the job starts (a bench, not a test)
    return profiler


def client(args: argparse.Namespace) -> None:
    runner = {"polyledger": run_polyledger, "massive": run_massive}[args.name]
    with tempfile.TemporaryDirectory() as scratch:
        bars, measured = runner(args, Path(scratch))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"bars": bars, "peak_mb": peak_mb, **measured}), flush=True)


# --- the bench ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--bars-per-day", type=int, default=320)  # ~4.8 M bars by default
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--gzip-level", type=int, default=6)
    parser.add_argument("--only", choices=("polyledger", "massive"), default=None)
    parser.add_argument("--cache", default=None, help="keep the encoded pages in this file between runs")
    parser.add_argument(
        "--baseline", default=None, help="also polyledger from this source tree (git archive REF polyledger)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each client this many times, interleaved")
    sub = parser.add_subparsers(dest="mode")  # the bench's own processes
    server = sub.add_parser("_serve")
    one = sub.add_parser("_client")
    for p in (server, one):
        p.add_argument("--tickers", type=int, required=True)
        p.add_argument("--months", type=int, required=True)
        p.add_argument("--bars-per-day", type=int, default=320)
        p.add_argument("--gzip-level", type=int, default=6)
        p.add_argument("--workers", type=int, default=8)
    server.add_argument("--cache", default=None)
    one.add_argument("name")
    one.add_argument("url")
    args = parser.parse_args()
    if args.mode == "_serve":
        return serve(args)
    if args.mode == "_client":
        return client(args)
    return compare(args)


def compare(args: argparse.Namespace) -> None:
    import psutil

    common = ["--tickers", str(args.tickers), "--months", str(args.months)]
    common += ["--bars-per-day", str(args.bars_per_day), "--workers", str(args.workers)]
    common += ["--gzip-level", str(args.gzip_level)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, __file__, "_serve", *common]
    if args.cache:
        command += ["--cache", args.cache]
    began = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        url, pages, size = server.stdout.readline().split()
        print(
            f"server: {pages} pages encoded in {time.perf_counter() - began:.1f} s "
            f"({int(size) / 1e6:.1f} MB gzip, level {args.gzip_level}), in its own process"
        )
        names = [args.only] if args.only else ["polyledger", "massive"]
        runs = [(name, name, env) for name in names]
        if args.baseline:  # the same client from another source tree, e.g. `git archive REF polyledger`
            tree = str(Path(args.baseline).resolve())
            runs.insert(0, ("baseline", "polyledger", {**env, "PYTHONPATH": tree}))
        figures: dict[str, dict] = {}
        served = _served(url)
        for _ in range(args.repeat):  # interleaved: a busy spell of the machine hits each alike
            for label, name, client_env in runs:
                server_cpu = psutil.Process(server.pid).cpu_times()
                figure = _one_client([sys.executable, __file__, "_client", *common, name, url], client_env)
                after = psutil.Process(server.pid).cpu_times()
                figure["server_cpu"] = after.user + after.system - server_cpu.user - server_cpu.system
                now = _served(url)
                figure["requests"] = now["hits"] + now["misses"] - served["hits"] - served["misses"]
                figure["misses"], served = now["misses"] - served["misses"], now
                figure["per_m"] = figure["cpu"] / (figure["bars"] / 1e6)
                figures.setdefault(label, {"all": []})["all"].append(figure)
        for entry in figures.values():  # the run with the median CPU per bar stands for the label
            ordered = sorted(entry["all"], key=lambda f: f["per_m"])
            entry.update(ordered[(len(ordered) - 1) // 2])
    finally:
        server.terminate()
        server.wait()
    report(args, figures)


def _one_client(command: list[str], env: dict[str, str]) -> dict:
    """One client process's figures, with the peak RSS and PSS of its whole process tree
    sampled from outside (every 100 ms; PSS counts a shared page once among the processes
    sharing it: the honest sum over processes)."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"rss": 0, "pss": 0}
    sampler = threading.Thread(target=_sample_memory, args=(child, peak), daemon=True)
    sampler.start()
    out, err = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"client failed ({child.returncode}): {err[-2000:]}")
    figure = json.loads(out.strip().splitlines()[-1])
    figure["tree_rss_mb"], figure["tree_pss_mb"] = peak["rss"] / 1e6, peak["pss"] / 1e6
    return figure


def _sample_memory(child: subprocess.Popen, peak: dict[str, int]) -> None:
    import psutil

    try:
        root = psutil.Process(child.pid)
    except psutil.NoSuchProcess:
        return
    while child.poll() is None:
        rss = pss = 0
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in members:
            try:
                info = member.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss, pss = rss + info.rss, pss + info.pss
        peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
        time.sleep(0.1)


def _served(url: str) -> dict:
    import requests

    return requests.get(url + "/_stats", timeout=10).json()


def report(args: argparse.Namespace, figures: dict[str, dict]) -> None:
    misses = ", ".join(f"{name} {f['misses']}" for name, f in figures.items())
    print(
        f"job: {args.tickers} tickers x {args.months} months of minute bars "
        f"({args.bars_per_day} bars/day), {args.workers} workers/threads each; "
        f"requests not pre-encoded (encoded when asked, in the server's process): {misses}"
    )
    header = (
        "client | bars | requests | wall s | client CPU s | CPU s per M bars | bars/s | cores busy "
        "(CPU s / wall s) | peak RSS MB | peak PSS MB (process tree)"
    )
    print(header)
    print("|".join("---" for _ in header.split("|")))
    for name, f in figures.items():
        per_m = f["per_m"]
        print(
            f"{name} | {f['bars']:,} | {f['requests']:,} | {f['wall']:.1f} | {f['cpu']:.1f} | "
            f"{per_m:.2f} | {f['bars'] / f['wall']:,.0f} | {f['cpu'] / f['wall']:.2f} | "
            f"{f['tree_rss_mb']:.0f} | {f['tree_pss_mb']:.0f}"
        )
    for name, f in figures.items():
        if len(f["all"]) > 1:
            runs = ", ".join(f"{run['per_m']:.2f}" for run in f["all"])
            pss = ", ".join(f"{run['tree_pss_mb']:.0f}" for run in f["all"])
            print(
                f"{name}: CPU s per M bars in each of {len(f['all'])} runs: {runs} (the median is shown); "
                f"peak PSS MB: {pss}"
            )
    if "baseline" in figures and "polyledger" in figures:
        ours, base = figures["polyledger"], figures["baseline"]
        print(
            f"polyledger / baseline ({args.baseline}): CPU per M bars {ours['per_m'] / base['per_m']:.2f}, "
            f"peak PSS {ours['tree_pss_mb'] / base['tree_pss_mb']:.2f}"
        )
    for name, f in figures.items():
        print(f"server CPU while {name} ran: {f['server_cpu']:.1f} s (not counted as the client's)")
    if "polyledger" in figures and "massive" in figures:
        ours, peer = figures["polyledger"], figures["massive"]
        print(
            f"polyledger / massive: CPU per M bars {ours['per_m'] / peer['per_m']:.2f} "
            f"({peer['per_m'] / ours['per_m']:.1f}x less CPU), wall {ours['wall'] / peer['wall']:.2f}"
        )
    cores = os.cpu_count() or 1
    for name, f in figures.items():
        if name == "baseline":
            continue
        request_h = FULL_REQUESTS / RATE / 3600
        client_h = FULL_BARS / 1e6 * f["per_m"] / cores / 3600
        print(
            f"projection, {name}: full job {FULL_BARS / 1e9:.2f} billion bars, "
            f"{FULL_REQUESTS:,.0f} requests: "
            f"{request_h:.2f} h at {RATE:g} requests/s, client {client_h:.2f} h on {cores} cores "
            f"at {f['per_m']:.2f} CPU s per M bars -> {max(request_h, client_h):.2f} h"
        )


if __name__ == "__main__":
    main()

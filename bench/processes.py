"""One `run` in 1 process against the same run in N (`run --processes N`), same job, same
server, same machine, one after the other in this very run.

    python bench/processes.py [--tickers 10] [--months 24] [--bars-per-day 600] [--workers 16] [--processes 2]

The stand-in runs in its own process (bench/standin.py), so its work is not the client's.
Each `polyledger run` is a child of this script, with its own ledger and data folder.
Printed per configuration: wall time, bars/s, client CPU seconds (user + system of the
run and every process it started, from the kernel's accounting of waited-for children)
and CPU s per million bars; the peak RSS of the run's whole process tree (sampled every
50 ms: the sum over the parent and its children); and the N-process figures as ratios
against the 1-process ones. Wall-clock figures mean something on an idle machine only;
CPU seconds, RSS and PSS (the processes' sum with shared pages counted once) also under
contention.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from standin import standin

KEY = "processes-bench-key"
START = "2022-01-01"


def _end(months: int) -> str:
    year, month = 2022 + months // 12, months % 12 + 1
    import datetime as dt

    return (dt.date(year, month, 1) - dt.timedelta(days=1)).isoformat()


def _cli(*args: object, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "polyledger", *(str(a) for a in args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _peak_rss(process: subprocess.Popen, peak: list[int]) -> None:
    """The largest sums of RSS and of PSS over the run and its children (and the parent's
    own RSS), sampled until it exits. PSS shares each page among the processes mapping it:
    their sum is what they hold together (RSS counts the shared libraries once per process)."""
    try:
        root = psutil.Process(process.pid)
    except psutil.NoSuchProcess:
        return
    while process.poll() is None:
        total = total_pss = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    info = member.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total, total_pss = total + info.rss, total_pss + info.pss
                if member.pid == root.pid:
                    peak[1] = max(peak[1], info.rss)
        except psutil.NoSuchProcess:
            break
        peak[0], peak[2] = max(peak[0], total), max(peak[2], total_pss)
        time.sleep(0.1)


def one_run(url: str, tickers: list[str], months: int, workers: int, processes: int) -> dict[str, float]:
    env = dict(os.environ, POLYGON_API_KEY=KEY)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "universe.csv").write_text("ticker\n" + "\n".join(tickers) + "\n")
        plan = _cli(
            "plan", "--universe", "universe.csv", "--from", START, "--to", _end(months), cwd=work, env=env
        )
        assert plan.wait() == 0, plan.stderr.read() if plan.stderr else ""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        run = _cli(
            "run",
            "--base-url",
            url,
            "--workers",
            workers,
            "--rate",
            100_000,
            "--processes",
            processes,
            cwd=work,
            env=env,
        )
        peak = [0, 0, 0]  # the whole tree's RSS, the parent's alone, the whole tree's PSS
        sampler = threading.Thread(target=_peak_rss, args=(run, peak))
        sampler.start()
        out, err = run.communicate()
        wall = time.perf_counter() - started
        sampler.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run, and the children it waited for
        assert run.returncode == 0, err[-2000:]
        status = _cli("sql", "SELECT sum(rows) FROM units", "--format", "csv", cwd=work, env=env)
        bars = int(status.communicate()[0].splitlines()[1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall": wall,
        "cpu": cpu,
        "bars": bars,
        "rss_mb": peak[0] / 1e6,
        "parent_mb": peak[1] / 1e6,
        "pss_mb": peak[2] / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=10)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--bars-per-day", type=int, default=600)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    tickers = [f"P{i:03d}" for i in range(args.tickers)]
    extra = ("--latency", "0.005")
    with standin(tickers, key=KEY, bars_per_day=args.bars_per_day, extra=extra) as url:
        results = {
            count: one_run(url, tickers, args.months, args.workers, count) for count in (1, args.processes)
        }
    print(
        f"{args.tickers} tickers x {args.months} months, {args.bars_per_day} bars/day, "
        f"--workers {args.workers} in total, {os.cpu_count()} cores"
    )
    for count, figures in results.items():
        print(
            f"--processes {count}: {figures['bars']:,} bars in {figures['wall']:.1f} s "
            f"({figures['bars'] / figures['wall']:,.0f} bars/s), client CPU {figures['cpu']:.1f} s "
            f"({figures['cpu'] / figures['bars'] * 1e6:.2f} CPU s per million bars), "
            f"peak RSS of all its processes {figures['rss_mb']:.0f} MB (the first process alone "
            f"{figures['parent_mb']:.0f} MB), peak PSS of all {figures['pss_mb']:.0f} MB, "
            f"cores busy (CPU s / wall s) {figures['cpu'] / figures['wall']:.2f}"
        )
    one, many = results[1], results[args.processes]
    speed = (many["bars"] / many["wall"]) / (one["bars"] / one["wall"])
    print(
        f"--processes {args.processes} vs 1: bars/s x{speed:.2f}, "
        f"CPU per bar x{(many['cpu'] / many['bars']) / (one['cpu'] / one['bars']):.2f}, "
        f"peak RSS x{many['rss_mb'] / one['rss_mb']:.2f}, peak PSS x{many['pss_mb'] / one['pss_mb']:.2f}"
    )


if __name__ == "__main__":
    main()

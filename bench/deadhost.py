"""How long a dead host stalls the others: three `run` processes on one ledger, one killed
with -9 `--kill-after` seconds in (or later, once it holds units), on SQLite and on PostgreSQL.

    python bench/deadhost.py [--tickers 24] [--months 30] [--kill-after 7] [--lease 60]
                             [--pg postgresql://user:pw@127.0.0.1:5432/db]

Each backend runs twice in the same run: "before", the runs taking a dead host's units back
only when their leases expire (the silence rule off: `fetch/silence.py SILENT_BEATS = 0` in
the children), and "after", as shipped (a run that misses 5 beats of 2 s is dead). The
stand-in serves from its own process. The ledger is sampled every 0.1 s; the figures:

- killed after: seconds from the start to the kill;
- held: units the killed process held when it died;
- taken back after: seconds from the kill until it held none (its units back in the queue:
  the survivors take them when they run out of other work, at the earliest once they have
  watched it miss 5 beats);
- survivors idle: seconds after the kill with work left but no unit in the survivors' hands
  (they were waiting on the dead host's units);
- dead unit-seconds: units held by the dead host, integrated over time (work not progressing);
- wall: start to the survivors' exit.

Wall-clock figures on a shared machine: compare the two modes of one run, not across runs.
The PostgreSQL URL may also come from POLYLEDGER_TEST_PG_URL (a fresh database is made and
dropped inside it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claims import drop, pg_database  # noqa: E402
from scratch_run import months_from  # noqa: E402
from standin import KEY, standin  # noqa: E402

from polyledger.ledger import Ledger  # noqa: E402
from polyledger.plan import plan  # noqa: E402

SAMPLE_SECONDS = 0.1
PROCESSES = 3

# a `run` child with the silence rule set as asked (0 = off: leases alone, as before)
CHILD = (
    "import sys; import polyledger.fetch.silence as silence; silence.SILENT_BEATS = int(sys.argv[1]); "
    "from polyledger.cli import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass
class Figures:
    held: int = 0
    taken_back_after: float = float("nan")
    idle: float = 0.0
    dead_unit_seconds: float = 0.0
    wall: float = 0.0
    killed_at: float = 0.0
    exit_codes: tuple[int | None, ...] = ()


def _sample(ledger: Ledger, dead_owner: str | None) -> tuple[int, int, int]:
    """(units left, held by the dead owner, held by anyone else)."""
    left = ledger.query("SELECT count(*) AS n FROM units WHERE state IN ('pending', 'running')")[0].n
    held = dict(
        ledger.query("SELECT lease_owner, count(*) FROM units WHERE state = 'running' GROUP BY lease_owner")
    )
    dead = held.pop(dead_owner, 0) if dead_owner else 0
    return left, dead, sum(held.values())


def measure(location: str, url: str, args: argparse.Namespace, silent_beats: int, scratch: Path) -> Figures:
    tickers = [f"K{i:03d}" for i in range(args.tickers)]
    start = dt.date(2020, 1, 1)
    with Ledger(location) as ledger:
        plan(ledger, tickers, "minute", start, months_from(start, args.months))
    data = scratch / f"data-{silent_beats}"
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(silent_beats),
        "run",
        "--base-url",
        url,
        "--ledger",
        location,
        "--data",
        str(data),
        "--workers",
        str(args.workers),
        "--rate",
        str(args.rate),
        "--lease-seconds",
        str(args.lease),
    ]
    env = dict(os.environ, POLYGON_API_KEY=KEY)
    figures = Figures()
    with Ledger(location) as ledger:
        began = time.monotonic()
        logs = [(scratch / f"run-{silent_beats}-{i}.err").open("wb") for i in range(PROCESSES)]
        children = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
        victim, survivors = children[0], children[1:]
        try:
            # `--kill-after` seconds in, and once it holds units (a slow start must not make
            # a figure of a process that never claimed anything)
            dead_owner = None
            while time.monotonic() < began + 120:
                time.sleep(SAMPLE_SECONDS)
                owners = ledger.query("SELECT owner FROM runs WHERE pid = :pid", {"pid": victim.pid})
                dead_owner = owners[0].owner if owners else None
                if time.monotonic() >= began + args.kill_after and _sample(ledger, dead_owner)[1]:
                    break
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed = time.monotonic()
            figures.killed_at = killed - began
            _, figures.held, _ = _sample(ledger, dead_owner)
            previous = killed
            while any(child.poll() is None for child in survivors):
                time.sleep(SAMPLE_SECONDS)
                now = time.monotonic()
                left, dead, others = _sample(ledger, dead_owner)
                step = now - previous
                previous = now
                figures.dead_unit_seconds += dead * step
                if left and not others:
                    figures.idle += step
                if not dead and math.isnan(figures.taken_back_after):
                    figures.taken_back_after = now - killed
            figures.wall = time.monotonic() - began
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            for log in logs:
                log.close()
        figures.exit_codes = tuple(child.returncode for child in survivors)
    if not figures.held or any(figures.exit_codes):
        for i in range(PROCESSES):  # say why: a figure without its cause is no figure
            said = (scratch / f"run-{silent_beats}-{i}.err").read_text()[-800:]
            print(f"run {i} (0 = the killed one) said: {said}")
    return figures


def report(backend: str, before: Figures, after: Figures) -> None:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "-"

    print(f"\n{backend}: {PROCESSES} processes, one killed with -9", flush=True)
    print(f"  {'':24}{'before':>10}{'after':>10}{'after/before':>14}")
    rows = [
        ("killed after (s)", before.killed_at, after.killed_at, None),
        ("units held by the dead", before.held, after.held, None),
        ("taken back after (s)", before.taken_back_after, after.taken_back_after, True),
        ("survivors idle (s)", before.idle, after.idle, True),
        ("dead unit-seconds", before.dead_unit_seconds, after.dead_unit_seconds, True),
        ("wall (s)", before.wall, after.wall, True),
    ]
    for name, b, a, compare in rows:
        cells = f"{b:>10.1f}{a:>10.1f}" if isinstance(b, float) else f"{b:>10}{a:>10}"
        print(f"  {name:24}{cells}{ratio(a, b) if compare else '':>14}")
    print(f"  survivors' exit codes: before {before.exit_codes}, after {after.exit_codes}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=24)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--bars-per-day", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--kill-after", type=float, default=7.0)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stand-in adds to each answer")
    parser.add_argument("--page-cap", type=int, default=1000, help="largest page the stand-in sends")
    parser.add_argument("--pg", default=os.environ.get("POLYLEDGER_TEST_PG_URL"))
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    tickers = [f"K{i:03d}" for i in range(args.tickers)]
    extra = ("--latency", str(args.latency), "--page-cap", str(args.page_cap))
    print(
        f"{args.tickers} tickers x {args.months} months = {args.tickers * args.months} units, "
        f"{PROCESSES} x `run --workers {args.workers} --rate {args.rate:g} --lease-seconds {args.lease:g}`, "
        f"one killed after {args.kill_after:g} s; stand-in latency {args.latency:g} s, pages of "
        f"{args.page_cap} bars, {args.bars_per_day} bars a day"
    )
    with standin(tickers, key=KEY, bars_per_day=args.bars_per_day, seed=14, extra=extra) as url:
        for backend in args.backends.split(","):
            if backend == "postgresql" and not args.pg:
                print("\npostgresql: skipped (no --pg URL and no POLYLEDGER_TEST_PG_URL)")
                continue
            results = []
            for silent_beats in (0, None):  # before, after
                beats = 0 if silent_beats == 0 else _shipped_beats()
                with tempfile.TemporaryDirectory() as scratch:
                    if backend == "sqlite":
                        results.append(
                            measure(str(Path(scratch) / "ledger.db"), url, args, beats, Path(scratch))
                        )
                        continue
                    name, location = pg_database(args.pg)
                    try:
                        results.append(measure(location, url, args, beats, Path(scratch)))
                    finally:
                        drop(args.pg, name)
            report(backend, *results)


def _shipped_beats() -> int:
    from polyledger.fetch.silence import SILENT_BEATS

    return SILENT_BEATS


if __name__ == "__main__":
    main()

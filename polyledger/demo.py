"""The built-in demo: the stand-in API, universe -> plan -> run -> audit. No key needed.

It builds the universe from the API (active and delisted listings, their list dates, a
symbol reused by another company, a renamed company's earlier symbol), plans
minute and daily bars inside each ticker's listing window plus splits and dividends,
and shows every outcome a real download meets: multi-page months, empty months (a late
listing's first month, a ticker the API does not know), months outside the plan's
history (`failed` as not_entitled, although a range reaching back before it is answered
with only the entitled bars), and transient faults that are retried away.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from rich.console import Console

from polyledger.checks.audit import audit
from polyledger.checks.quality import check_quality
from polyledger.datasets.reference import plan_reference
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.output.progress import RunDisplay, print_summary
from polyledger.output.render import print_audit, print_quality
from polyledger.output.report import write_report
from polyledger.plan import plan
from polyledger.polygon.client import RetryPolicy
from polyledger.storage import BarStore
from polyledger.testing import Dividend, FaultPlan, Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members
from polyledger.universe_build import build_universe

DEMO_KEY = "demo-key"
DEMO_SETTING = "demo"  # settings: this ledger is the demo's (it may resume; nothing else is written over)
DEMO_FROM = dt.date(2022, 7, 1)
DEMO_TO = dt.date(2024, 6, 30)
# the demo "plan" is entitled from here on: a range wholly before it gets a 403, one reaching
# back before it only the entitled bars (the stand-in's straddle="clip"). A year boundary, so
# no unit straddles it (one that did would come back done with its entitled part only).
HISTORY_START = dt.date(2023, 1, 1)

DEMO_LISTINGS = (
    Listing("AAPL", bars_per_day=900, splits=(Split(dt.date(2023, 8, 14), 1, 4),)),
    Listing("BRK.B", bars_per_day=400, primary_exchange="XNYS"),
    Listing("SIRI", bars_per_day=300),
    Listing("PLUG", bars_per_day=250, dividends=(Dividend(dt.date(2023, 2, 6), 0.12),)),
    Listing("AMC", list_date=dt.date(2023, 3, 15), bars_per_day=200),
    Listing("BBBY", delist_date=dt.date(2023, 5, 2), bars_per_day=150),
    Listing("TINY", bars_per_day=20),
    Listing("BF-B", bars_per_day=60),
    # a symbol reused by an unrelated company, with a few bars of nobody in between
    Listing(
        "ZETA",
        delist_date=dt.date(2023, 2, 15),
        bars_per_day=80,
        name="Zeta Mining Corp.",
        company="zeta-mining",
    ),
    Listing(
        "ZETA",
        list_date=dt.date(2023, 2, 21),
        delist_date=dt.date(2023, 2, 24),
        bars_per_day=2,
        company="zeta-gap",
        known=False,  # no listing the reference data knows
    ),
    Listing(
        "ZETA",
        list_date=dt.date(2023, 10, 2),
        bars_per_day=80,
        name="Zeta Health Inc.",
        company="zeta-health",
    ),
    # a company renamed mid-history: one security across two symbols
    Listing("FACE", delist_date=dt.date(2023, 6, 9), bars_per_day=70, company="facet", renamed=True),
    Listing("MTVS", list_date=dt.date(2023, 6, 12), bars_per_day=70, company="facet"),
)
UNKNOWN_TICKER = "NOSUCH"  # added by hand to the universe: the API has no such symbol


def demo_market() -> SyntheticMarket:
    return SyntheticMarket(DEMO_LISTINGS, seed=2004)


def _check_own_folder(directory: Path) -> None:
    """The demo writes synthetic bars: never into a folder holding a ledger or bars of
    anything else (a download's files would be replaced by them). Its own folder, from an
    earlier demo, is resumed."""
    taken = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if taken is not None and not taken.is_dir():  # the folder, or one it would be made in
        raise InputError(f"{taken} is a file, not a folder: give the demo a folder (--dir)")
    ledger_path = directory / "ledger.db"
    if ledger_path.exists():
        if not _is_demo_ledger(ledger_path):
            raise InputError(
                f"{directory} holds a ledger that is not the demo's: the demo writes synthetic bars, "
                "so give it a folder of its own (--dir; an earlier version's demo folder: delete it)"
            )
    elif directory.is_dir() and any(directory.iterdir()):
        # a download's data folder, a universe file: anything here without the demo's
        # ledger may be the user's, and the demo would write over it
        raise InputError(
            f"{directory} holds files and no demo ledger: the demo writes synthetic bars and its own "
            "ledger, universe and report, so give it an empty folder or a new one (--dir)"
        )


def _is_demo_ledger(path: Path) -> bool:
    """Read-only (opening it as a ledger would migrate another version's schema)."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM settings WHERE key = ?", (DEMO_SETTING,)).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:  # not a ledger at all, damaged, or another program's database
        return False
    return row is not None and row[0] == "true"


def run_demo(
    directory: Path,
    *,
    workers: int = 8,
    console: Console | None = None,
    max_units: int | None = None,
    adjusted: bool = True,
) -> int:
    """Run the whole demo in `directory` (ledger.db, data/, universe.csv). Returns 0 when
    the run finished (the months before the demo plan's history stay `failed`, on purpose).
    `max_units` stops early, leaving units pending; `adjusted=False` fetches raw bars (as
    `run --unadjusted`), to be adjusted on read."""
    console = console or Console(highlight=False)
    directory = Path(directory)
    _check_own_folder(directory)
    directory.mkdir(parents=True, exist_ok=True)
    universe = directory / "universe.csv"
    server = StandInServer(
        demo_market(),
        api_keys=(DEMO_KEY,),
        latency=0.002,
        page_cap=5_000,  # small pages, so dense months take several requests
        history_start=HISTORY_START,
        straddle="clip",  # a range reaching before it: only the entitled bars, silently
        faults=FaultPlan(rate=0.03, seed=1, slow_seconds=3.0),
    )
    with server, Ledger(directory / "ledger.db") as ledger:
        ledger.claim_setting(DEMO_SETTING, "true")
        console.print(f"stand-in Polygon API at {server.url} (key: {DEMO_KEY})", markup=False)
        store = BarStore(directory / "data")
        details = Run(
            ledger,
            store,
            api_key=DEMO_KEY,
            base_url=server.url,
            options=_options(workers, None, "details", "ticker_events"),
        )
        built = build_universe(
            details, types=["CS"], exchanges=["XNAS", "XNYS"], cap_max=None, as_of=None, out=universe
        )
        console.print(f"universe: {built.funnel_text()} -> {universe.name}", markup=False)
        members = [*read_members(universe), UNKNOWN_TICKER]
        for dataset in ("minute", "day"):
            result = plan(ledger, members, dataset, DEMO_FROM, DEMO_TO)
            console.print(
                f"planned {result.units_in_plan} {dataset} units for {result.tickers} tickers, "
                f"{result.added} new, {result.outside_listing} outside listing windows",
                markup=False,
            )
        tickers = list(dict.fromkeys(m if isinstance(m, str) else m.ticker for m in members))
        for dataset in ("splits", "dividends"):
            added = plan_reference(ledger, tickers, dataset, DEMO_TO)
            console.print(f"planned {len(tickers)} {dataset} units, {added} new", markup=False)
        options = _options(workers, max_units)
        options.adjusted = adjusted
        job = Run(ledger, store, api_key=DEMO_KEY, base_url=server.url, options=options)
        with RunDisplay(console, job.client, plain_every=2.0) as display:
            report = job.execute(on_tick=display.tick)
        print_summary(console, report)
        report_audit = audit(ledger)
        quality = check_quality(ledger, directory / "data")
        page = write_report(ledger, directory / "report.html")
    print_audit(console, report_audit)
    print_quality(console, quality)
    ledger_path = directory / "ledger.db"
    console.print(
        f"\nThe demo's plan is entitled from {HISTORY_START} only, so earlier months are failed "
        "(not_entitled), as on a real plan with shorter history: a range reaching back before "
        "that date is answered with the entitled bars only, so those months were asked again "
        "one by one.\n"
        f"Report: {page.html} (open it in a browser). Look around (inside the venv, or with "
        "`python -m polyledger`):\n"
        f"  polyledger status --ledger {ledger_path}\n"
        f'  polyledger sql "SELECT state, count(*), sum(rows) FROM units GROUP BY state" '
        f"--ledger {ledger_path}\n"
        f"  python -c \"import polyledger; print(polyledger.open('{ledger_path.as_posix()}', "
        f"'{(directory / 'data').as_posix()}').bars('minute', tickers=['AAPL']).collect())\"",
        markup=False,
    )
    return 0 if report.outcome == "finished" else 1


def _options(workers: int, max_units: int | None, *datasets: str) -> RunOptions:
    return RunOptions(
        workers=workers,
        rate=400.0,
        retry=RetryPolicy(base_delay=0.05, max_delay=1.0),
        timeout=(2.0, 1.5),
        max_units=max_units,
        datasets=datasets or None,
    )


# units the example's run settles before it stops: enough to reach months the API has no
# bars for (empty_confirmed), few enough to leave some pending
MAX_UNITS = 260


def make_example_ledger(target: Path, console: Console | None = None) -> None:
    """The shipped `ledger.db.example`: a demo ledger stopped part-way, so it shows every
    state: done, empty_confirmed, failed, a unit held by a crashed worker (running, lease
    long expired) and pending ones."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        run_demo(Path(scratch), workers=4, console=console or Console(quiet=True), max_units=MAX_UNITS)
        with Ledger(Path(scratch) / "ledger.db") as ledger:
            ledger.clock = lambda: dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
            ledger.claim("example-host:4242:crashed", lease_seconds=60, limit=1)
            ledger.checkpoint()
        target.unlink(missing_ok=True)
        shutil.copyfile(Path(scratch) / "ledger.db", target)

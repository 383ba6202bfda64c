"""Helpers shared by the tests: the test universe, the CLI in-process, the truth."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from polyledger.cli import main as cli_main
from polyledger.storage import BarStore
from polyledger.testing import Listing, SyntheticMarket
from polyledger.testing.market import et_midnight_ms

API_KEY = "pk_TEST_s3cr3t_9f8e7d6c5b4a"  # distinctive, so a leak is easy to grep for

LISTINGS = (
    Listing("AAPL", bars_per_day=950),  # dense: ~20k bars a month, several pages at page_cap
    Listing("BRK.B", bars_per_day=400),
    Listing("SIRI", bars_per_day=300),
    Listing("PLUG", bars_per_day=250),
    Listing("BF-B", bars_per_day=60),
    Listing("TINY", bars_per_day=5),
    Listing("NEWCO", list_date=dt.date(2023, 6, 14), bars_per_day=200),  # empty months before listing
    Listing("GONE", delist_date=dt.date(2023, 4, 20), bars_per_day=150),  # empty months after delisting
    Listing("MID1", bars_per_day=120),
    Listing("MID2", bars_per_day=80),
    Listing("MID3", bars_per_day=40),
)
UNKNOWN = "NOSUCH"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run the CLI in-process, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def write_universe(path: Path, tickers: list[str]) -> Path:
    path.write_text("ticker,name\n" + "".join(f"{t},x\n" for t in tickers), encoding="utf-8")
    return path


# the demo's symbols with a listing before its plan's history (2023-01-01): AAPL, BRK.B,
# SIRI, PLUG, BBBY, TINY, BF-B, the unknown NOSUCH, ZETA's first company and FACE (not AMC,
# listed in 2023): each has July-December 2022 minute units and a 2022 day unit, all
# `failed` as not_entitled
DEMO_BEFORE_HISTORY = 10
# the bar columns a download must equal the stand-in's truth in (`truth`, `read_dataset`)
STORED_COLUMNS = [
    "ticker",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "transactions",
    "otc",
]
# every column of a stored bar file, in order: the bars plus the security they belong to
FILE_COLUMNS = ["ticker", "security_id", *STORED_COLUMNS[1:]]


def truth(
    market: SyntheticMarket,
    dataset: str,
    ticker: str,
    start: dt.date,
    end: dt.date,
    *,
    adjusted: bool = False,
) -> pl.DataFrame:
    """The bars the stand-in holds for [start, end] (US/Eastern dates), in the stored schema
    (raw, or split-adjusted as of the market's splits)."""
    start_ms, end_ms = et_midnight_ms(start), et_midnight_ms(end + dt.timedelta(days=1))
    fetch = market.minute_bars if dataset == "minute" else market.day_bars
    return as_stored(fetch(ticker, start_ms, end_ms, adjusted=adjusted), ticker)


def as_stored(raw: pl.DataFrame, ticker: str) -> pl.DataFrame:
    """The stand-in's raw bars (`t o h l c v vw n otc`) in the stored bar columns."""
    return raw.select(
        pl.lit(ticker).alias("ticker"),
        pl.col("t").cast(pl.Datetime("ms", "UTC")).alias("timestamp"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").cast(pl.Float64).alias("volume"),
        pl.col("vw").alias("vwap"),
        pl.col("n").cast(pl.Int64).alias("transactions"),
        pl.col("otc").cast(pl.Boolean).fill_null(False).alias("otc"),  # stored false unless true
    )


def read_dataset(data: Path, dataset: str) -> pl.DataFrame:
    """The whole downloaded dataset in one line, as a user would read it."""
    frame = pl.scan_parquet(str(data / dataset / "**" / "*.parquet"), hive_partitioning=False).collect()
    return frame.select(STORED_COLUMNS).sort("ticker", "timestamp")


class LedgerClock:
    """The ledger's clock (`Ledger(..., clock=)`), moved by the test only."""

    def __init__(self, start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class ScriptedClient:
    """A PolygonClient stand-in for unit tests: answers each request with the next scripted
    body (bytes) or raises the next exception, and records what was asked."""

    base_url = "https://api.test"

    def __init__(self, answers: list, tries: int = 1) -> None:
        self.answers = list(answers)
        self.tries = tries
        self.calls: list[tuple[str, dict | None]] = []

    def get(self, url: str, params: dict | None = None, decode=None):  # type: ignore[no-untyped-def]
        from polyledger.polygon.client import Response

        self.calls.append((url, params))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        decoded = decode(answer) if decode else None
        return Response(answer, 200, "header-id", decoded, self.tries)


# the error class each fault kind the stand-in injects is retried as
FAULT_CLASSES = {
    "429": "http_429",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "reset": "connection",
    "truncated": "truncated",
    "invalid_json": "invalid_json",
    "bad_shape": "bad_shape",
}


def python_env() -> dict[str, str]:
    """Environment for subprocess CLI runs: the same interpreter and packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def ledger_states(ledger_path: Path) -> dict[str, int]:
    """Units per state, read without disturbing a run that is writing."""
    connection = sqlite3.connect(f"{ledger_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return dict(connection.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        connection.close()


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def cli_command(*args: object) -> list[str]:
    """`polyledger ARGS...` as a child process runs it (same interpreter)."""
    return [sys.executable, "-m", "polyledger", *(str(a) for a in args)]


def run_side_by_side(args: list[object], copies: int, cwd: Path, timeout: float) -> list[CliResult]:
    """`copies` processes of `polyledger ARGS...` started together with the test API key, as
    several hosts would run them; their exit codes and output once all have finished."""
    env = dict(python_env(), POLYGON_API_KEY=API_KEY)
    children = [
        subprocess.Popen(cli_command(*args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(copies)
    ]
    outputs = [child.communicate(timeout=timeout) for child in children]
    return [
        CliResult(child.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        for child, (out, err) in zip(children, outputs, strict=True)
    ]


def skip_unless_required(reason: str) -> None:
    """Skip a test whose server is missing; fail instead where the services are required
    (`.ci/run` sets POLYLEDGER_REQUIRE_SERVICES=1 after starting them, so CI never skips)."""
    import pytest

    if os.environ.get("POLYLEDGER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def ctrl_c(child: subprocess.Popen, started) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Ctrl-C (SIGINT) to `child` once `started()` says it is inside its work: (its exit
    code, stderr, stdout). A child still running 15 s after fails the test (killed)."""
    try:
        assert started()
        child.send_signal(signal.SIGINT)
        try:
            out, err = child.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the command kept running 15 s after Ctrl-C (SIGINT)")
        return child.returncode, err, out
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


# --- one unit with one bar: the storage and repair tests' smallest done unit ----------------

FEB_2024 = dt.date(2024, 2, 1)


def one_bar(ticker: str, close: float) -> pl.DataFrame:
    """One minute bar of `ticker` (2024-02-01 15:00 UTC): a file whose content says which write made it."""
    return pl.DataFrame(
        {
            "ticker": [ticker],
            "timestamp": [dt.datetime(2024, 2, 1, 15, tzinfo=dt.timezone.utc)],
            "close": [close],
        },
        schema={"ticker": pl.String, "timestamp": pl.Datetime("ms", "UTC"), "close": pl.Float64},
    )


def settle_one_done(ledger, store, ticker: str, close: float):  # type: ignore[no-untyped-def]
    """One minute unit of `ticker` (Feb 2024) planned, claimed, its one-bar file written,
    settled done: (its id, the StoredFile)."""
    from polyledger.ledger import AttemptRecord, FetchedUnit, PlannedUnit

    ledger.add_units([PlannedUnit("minute", ticker, FEB_2024, dt.date(2024, 2, 29))])
    (unit,) = ledger.claim("setup", 60.0, 1)
    assert unit.ticker == ticker
    stored = store.write_unit("minute", ticker, FEB_2024, one_bar(ticker, close), adjusted=True)
    assert ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(bars=1), stored)], True) == [True]
    return unit.id, stored


def unit_state(ledger, unit_id: int) -> str:  # type: ignore[no-untyped-def]
    return ledger.query("SELECT state FROM units WHERE id = :id", {"id": unit_id})[0].state


def write_one_fenced(ledger, location, unit, close: float):  # type: ignore[no-untyped-def]
    """The one-bar file of a Feb 2024 minute unit `unit` holds, written as its worker
    writes it: fenced by the lease (`still_ours`)."""
    return BarStore(location).write_unit(
        "minute",
        unit.ticker,
        FEB_2024,
        one_bar(unit.ticker, close),
        adjusted=True,
        still_ours=lambda: ledger.still_holds(unit),
    )


def fetch_one_again(ledger, location, owner: str, close: float):  # type: ignore[no-untyped-def]
    """A run (`owner`) claims the one pending unit, writes its one-bar file fenced by the
    lease and settles it done: the StoredFile."""
    from polyledger.ledger import AttemptRecord, FetchedUnit

    (unit,) = ledger.claim(owner, 60.0, 1)
    stored = write_one_fenced(ledger, location, unit, close)
    assert ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(bars=1), stored)], True) == [True]
    return stored


def fetch_raw(folder: Path, base_url: str, key: str, datasets: tuple[str, ...]) -> None:
    """One raw run (one worker) of the planned units of `datasets` in folder's ledger.db
    into folder/data, to its finish."""
    from polyledger.fetch.runner import Run, RunOptions
    from polyledger.ledger import Ledger
    from polyledger.storage import BarStore

    with Ledger(folder / "ledger.db") as ledger:
        run = Run(
            ledger,
            BarStore(folder / "data"),
            api_key=key,
            base_url=base_url,
            options=RunOptions(workers=1, rate=500, adjusted=False, datasets=datasets),
        )
        assert run.execute().outcome == "finished"


# a stock SQLite's bound-variable limit (32766 since 3.32; Debian's builds allow 250,000):
# a query binding more fails on a user's machine, so the tests bind no more either; and
# the limit before 3.32, still the system SQLite of some long-lived distributions (RHEL 8's 3.26)
STOCK_SQLITE_VARIABLES = 32_766
OLD_SQLITE_VARIABLES = 999


def at_stock_sqlite_limit(ledger, variables: int = STOCK_SQLITE_VARIABLES) -> None:  # type: ignore[no-untyped-def]
    """Lower `ledger`'s SQLite bound-variable limit to a stock build's (`variables`), on its
    write connection and on every connection its engine opens for reads (pooled ones closed)."""
    from sqlalchemy import event

    def lower(connection: sqlite3.Connection, _record: object = None) -> None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)

    lower(ledger._connection())
    event.listen(ledger.engine, "connect", lower)
    ledger.engine.dispose()  # the pool's open connections were made at the default

"""Edges of the adjusted series (`dl.bars(adjust=...)`, polyledger/adjust.py) found by a
review (branch review-adjust, e0d0595): each test failed on the code of its day for the
reason its docstring gives.

- the default share basis is today's: a split or a dividend dated after today changes
  no price yet;

Deterministic: a stand-in API on 127.0.0.1, fixed dates (or dates counted from today's
where the promise is about today), no sleeps."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl

import polyledger
from polyledger.datasets.reference import plan_reference
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.periods import et_today
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members

D = dt.date
KEY = "adjusted-series-edges-key"


def _session(frame: pl.DataFrame) -> pl.Series:
    return frame.select(pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date()).to_series()


def _fetch(folder: Path, server: StandInServer, datasets: tuple[str, ...]) -> None:
    """One raw run of the planned units of `datasets`."""
    with Ledger(folder / "ledger.db") as ledger:
        run = Run(
            ledger,
            BarStore(folder / "data"),
            api_key=KEY,
            base_url=server.url,
            options=RunOptions(workers=1, rate=500, adjusted=False, datasets=datasets),
        )
        assert run.execute().outcome == "finished"


def _open(folder: Path) -> polyledger.Download:
    return polyledger.open(folder / "ledger.db", folder / "data")


# --- the default basis is today's: events after today change nothing yet ------------------


def test_a_split_that_has_not_happened_yet_does_not_change_todays_prices(tmp_path):
    """The splits listing carries announced splits before their execution date (sync_refs
    asks `execution_date.gte`, so it fetches them). The default (as_of=None) is documented
    as "the basis of today", and as_of=D as "a split after D changes nothing before D".
    The code multiplied every event in the table into each bar, future ones included:
    while a 1:4 split was announced and not executed, every adjusted bar -- the latest
    session's too -- was divided by 4 and its volume multiplied by 4, so today's adjusted
    close was a quarter of the price the stock trades at."""
    folder = tmp_path
    market = SyntheticMarket([Listing("FUT", bars_per_day=20, splits=(Split(D(2099, 1, 5), 1, 4),))], seed=3)
    (folder / "u.csv").write_text("ticker\nFUT\n", encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["FUT"], "splits", D(2024, 8, 1))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2024, 1, 1), D(2024, 2, 29))
    with StandInServer(market, api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "day"))
    with _open(folder) as dl:
        raw = dl.bars("day", tickers="FUT").collect()
        default = dl.bars("day", tickers="FUT", adjust="splits").collect()
        today = dl.bars("day", tickers="FUT", adjust="splits", as_of=et_today()).collect()
        stored = dl.reference("splits", tickers=["FUT"]).collect()
    assert stored.get_column("execution_date").to_list() == [D(2099, 1, 5)]  # the ledger knows it
    assert today.equals(raw)  # on today's basis nothing has happened yet
    assert default.equals(today), (
        f"latest session: raw close {raw['close'][-1]}, adjusted {default['close'][-1]} "
        f"(volume {raw['volume'][-1]} -> {default['volume'][-1]}): a split executing on 2099-01-05 "
        "was applied to bars of 2024"
    )


def test_a_dividend_that_has_not_gone_ex_yet_does_not_change_todays_prices(tmp_path):
    """A dividend is declared weeks before its ex-date, and the dividends listing carries it
    from then on. Its ex-date five days from today has a previous close already (the
    latest session before it, within 14 days), so the code took 1 - D / P off every bar,
    yesterday's close included: the default adjusted series was not on today's basis.
    Dates are counted from today's, as the promise is about today."""
    folder = tmp_path
    today = et_today()
    ex = today + dt.timedelta(days=5)
    market = SyntheticMarket([Listing("SOON", bars_per_day=20, dividends=(Dividend(ex, 0.5),))], seed=3)
    (folder / "u.csv").write_text("ticker\nSOON\n", encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["SOON"], "splits", today)
        plan_reference(ledger, ["SOON"], "dividends", today)
        plan(
            ledger,
            read_members(folder / "u.csv"),
            "day",
            today - dt.timedelta(days=30),
            today - dt.timedelta(days=1),
        )
    with StandInServer(market, api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends", "day"))
    with _open(folder) as dl:
        raw = dl.bars("day", tickers="SOON").collect()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to say: the dividend is not due yet
            default = dl.bars("day", tickers="SOON", adjust="splits+dividends").collect()
        on_today = dl.bars("day", tickers="SOON", adjust="splits+dividends", as_of=today).collect()
        stored = dl.reference("dividends", tickers=["SOON"]).collect()
    assert stored.get_column("ex_dividend_date").to_list() == [ex]  # the ledger knows it
    assert raw.height > 0 and _session(raw).max() < ex
    assert on_today.equals(raw)
    assert default.equals(raw), (
        f"latest session {_session(raw).max()}: raw close {raw['close'][-1]}, adjusted "
        f"{default['close'][-1]}: a dividend going ex on {ex} was applied before it"
    )

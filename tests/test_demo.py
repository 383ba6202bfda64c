"""The built-in demo works with no key, and what it writes reads back in one line."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import pytest
from rich.console import Console

from polyledger.demo import DEMO_LISTINGS, HISTORY_START, UNKNOWN_TICKER, run_demo


def test_demo_runs_end_to_end_and_shows_every_outcome(tmp_path):
    console = Console(file=open(tmp_path / "out.txt", "w", encoding="utf-8"), width=120)
    assert run_demo(tmp_path / "demo", workers=4, console=console) == 0
    console.file.close()
    printed = (tmp_path / "out.txt").read_text(encoding="utf-8")
    assert "INCOMPLETE" in printed and "not_entitled" in printed
    # listings, not symbols: the reused symbol, the renamed company and the bars of nobody
    # are shown by the audit and the report; the quality check never reads the change of
    # company as a price jump
    assert "reused symbol ZETA" in printed
    assert "one security across symbols" in printed and "FACE (" in printed and "-> MTVS (" in printed
    assert "unattributed: ZETA 2023-02-21..2023-02-24" in printed
    assert "checked (minute, day): clean" in printed
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Listings</h2>" in page and "ZETA" in page and "MTVS" in page
    with sqlite3.connect(tmp_path / "demo" / "ledger.db") as connection:
        states = dict(connection.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
        classes = {
            c for (c,) in connection.execute("SELECT DISTINCT error_class FROM units WHERE state = 'failed'")
        }
        bars_by_entitlement = connection.execute(
            "SELECT period_end < :start, state, error_class, count(*) FROM units "
            "WHERE dataset IN ('minute', 'day') GROUP BY 1, 2, 3",
            {"start": HISTORY_START.isoformat()},
        ).fetchall()
    assert set(states) == {"done", "empty_confirmed", "failed"}
    assert classes == {"not_entitled"}  # injected transient faults were all retried away
    # the stand-in answers a range reaching back before the plan's history with the entitled
    # bars only: the months before it are failed, never taken as empty, and none after fails
    assert {(before, state, error) for before, state, error, _ in bars_by_entitlement} == {
        (1, "failed", "not_entitled"),
        (0, "done", None),
        (0, "empty_confirmed", None),
    }

    data = tmp_path / "demo" / "data"
    frame = pl.scan_parquet(str(data / "minute" / "**" / "*.parquet"), hive_partitioning=False).collect()
    tickers = duckdb.sql(
        f"SELECT DISTINCT ticker FROM read_parquet('{(data / 'minute').as_posix()}/**/*.parquet', hive_partitioning = false)"
    ).fetchall()
    assert set(frame["ticker"].unique()) == {t for (t,) in tickers}
    listed = {listing.ticker for listing in DEMO_LISTINGS}
    assert set(frame["ticker"].unique()) == listed  # the hand-added unknown symbol has no data at all
    universe = pl.read_csv(tmp_path / "demo" / "universe.csv")
    assert set(universe["ticker"]) == listed and UNKNOWN_TICKER not in set(universe["ticker"])
    assert universe.filter(pl.col("ticker") == "BBBY")["active"].to_list() == [False]  # delisted, kept
    with sqlite3.connect(tmp_path / "demo" / "ledger.db") as connection:
        reference = dict(
            connection.execute(
                "SELECT dataset, count(*) FROM units WHERE dataset IN ('splits', 'dividends', 'details') "
                "AND state = 'done' GROUP BY dataset"
            ).fetchall()
        )
        planned_before_listing = connection.execute(
            "SELECT count(*) FROM units WHERE ticker = 'AMC' AND dataset = 'minute' AND period < '2023-03'"
        ).fetchone()[0]
    assert reference == {"details": len(listed), "splits": 1, "dividends": 1}
    assert planned_before_listing == 0  # no unit outside the listing window
    assert frame.select(pl.struct("ticker", "timestamp").is_duplicated().any()).item() is False


def test_the_demo_never_writes_its_bars_into_another_download(tmp_path):
    """The demo writes synthetic bars: a folder holding another ledger, or bar files without
    the demo's ledger, is refused before anything is written."""
    from polyledger.errors import InputError
    from polyledger.ledger import Ledger
    from polyledger.plan import plan

    quiet = Console(quiet=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    with Ledger(mine / "ledger.db") as ledger:
        plan(ledger, ["AAPL"], "day", dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    before = (mine / "ledger.db").read_bytes()
    with pytest.raises(InputError, match="holds a ledger that is not the demo's"):
        run_demo(mine, workers=2, console=quiet)
    assert (mine / "ledger.db").read_bytes() == before and not (mine / "data").exists()
    bars = tmp_path / "bars" / "data" / "day"
    bars.mkdir(parents=True)
    (bars / "part.parquet").write_bytes(b"not the demo's")
    with pytest.raises(InputError, match="holds files and no demo ledger"):
        run_demo(tmp_path / "bars", workers=2, console=quiet)
    assert sorted(p.name for p in (tmp_path / "bars").iterdir()) == ["data"]
    # a download's data folder itself (found by a review), or a folder with a universe file
    with pytest.raises(InputError, match="holds files and no demo ledger"):
        run_demo(tmp_path / "bars" / "data", workers=2, console=quiet)
    assert sorted(p.name for p in (tmp_path / "bars" / "data").iterdir()) == ["day"]
    mine_too = tmp_path / "universe-only"
    mine_too.mkdir()
    (mine_too / "universe.csv").write_text("ticker\nAAPL\n", encoding="utf-8")
    with pytest.raises(InputError, match="holds files and no demo ledger"):
        run_demo(mine_too, workers=2, console=quiet)
    assert (mine_too / "universe.csv").read_text(encoding="utf-8") == "ticker\nAAPL\n"
    # a download of an earlier version: refused without opening it as a ledger (which migrates)
    old = tmp_path / "old"
    old.mkdir()
    (old / "ledger.db").write_bytes(
        (Path(__file__).parent / "fixtures" / "ledger-0006" / "ledger.db").read_bytes()
    )
    with pytest.raises(InputError, match="not the demo's"):
        run_demo(old, workers=2, console=quiet)
    with sqlite3.connect(old / "ledger.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("0006",)


def test_an_earlier_demos_folder_is_resumed(tmp_path):
    from polyledger.demo import DEMO_SETTING, _check_own_folder
    from polyledger.ledger import Ledger

    demo = tmp_path / "demo"
    demo.mkdir()
    with Ledger(demo / "ledger.db") as ledger:
        ledger.claim_setting(DEMO_SETTING, "true")
    _check_own_folder(demo)  # an earlier demo's folder: resumed

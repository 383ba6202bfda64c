"""The built-in demo works with no key, and what it writes reads back in one line."""

from __future__ import annotations

import sqlite3

import duckdb
import polars as pl
from rich.console import Console

from polyledger.demo import DEMO_UNIVERSE, run_demo


def test_demo_runs_end_to_end_and_shows_every_outcome(tmp_path):
    console = Console(file=open(tmp_path / "out.txt", "w", encoding="utf-8"), width=120)
    assert run_demo(tmp_path / "demo", workers=4, console=console) == 0
    console.file.close()
    printed = (tmp_path / "out.txt").read_text(encoding="utf-8")
    assert "INCOMPLETE" in printed and "not_entitled" in printed
    with sqlite3.connect(tmp_path / "demo" / "ledger.db") as connection:
        states = dict(connection.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
        classes = {
            c for (c,) in connection.execute("SELECT DISTINCT error_class FROM units WHERE state = 'failed'")
        }
    assert set(states) == {"done", "empty_confirmed", "failed"}
    assert classes == {"not_entitled"}  # injected transient faults were all retried away

    data = tmp_path / "demo" / "data"
    frame = pl.scan_parquet(str(data / "minute" / "**" / "*.parquet"), hive_partitioning=True).collect()
    tickers = duckdb.sql(
        f"SELECT DISTINCT ticker FROM read_parquet('{(data / 'minute').as_posix()}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert set(frame["ticker"].unique()) == {t for (t,) in tickers}
    assert set(frame["ticker"].unique()) < set(DEMO_UNIVERSE)  # NOSUCH has no data at all
    assert frame.select(pl.struct("ticker", "timestamp").is_duplicated().any()).item() is False

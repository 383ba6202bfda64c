"""A ledger and data folder made by the previous version (schema 0006, bar files without
`security_id`) upgrade in place and keep working: audit, reading, quality checks, and
more runs whose new files sit beside the old ones."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import holidays
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, STORED_COLUMNS, run_cli, truth

import polyledger
from polyledger.testing import Listing, StandInServer, SyntheticMarket

D = dt.date
FIXTURE = Path(__file__).parent / "fixtures" / "ledger-0006"


@pytest.fixture
def old(work: Path) -> Path:
    for name in ("ledger.db", "data"):
        source = FIXTURE / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    return work


def old_market() -> SyntheticMarket:
    return SyntheticMarket([Listing("OLDA", bars_per_day=30), Listing("OLDB", bars_per_day=10)], seed=7)


# the fixture's stand-in traded every weekday: its files hold bars of 2023's NYSE holidays
# (01-02, 01-16, 02-20), which today's stand-in (as the real market) never has
FIXTURE_HOLIDAYS = sorted(holidays.financial_holidays("NYSE", years=2023))


def sessions_only(bars: pl.DataFrame) -> pl.DataFrame:
    """The bars the market of today has: the fixture's holiday bars left out (they are there)."""
    day = pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date()
    assert bars.filter(day.is_in(FIXTURE_HOLIDAYS)).height > 0
    return bars.filter(~day.is_in(FIXTURE_HOLIDAYS))


def test_the_fixture_is_the_previous_versions(old):
    import sqlite3

    with sqlite3.connect(old / "ledger.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("0006",)
    (first,) = list((old / "data" / "minute" / "ticker=OLDA").rglob("month=01/part.parquet"))
    assert "security_id" not in pl.read_parquet_schema(first)


def test_an_old_ledger_and_data_folder_upgrade_in_place_and_read_as_before(old):
    audited = run_cli("audit", "--deep")
    assert audited.code == 0, audited.out + audited.err
    market = old_market()
    with polyledger.open(old / "ledger.db", old / "data") as dl:
        # every ticker of the old ledger became one listing with its derived id
        assert dl.listings().select("ticker", "security_id", "link").rows() == [
            ("OLDA", "PL:OLDA", "derived"),
            ("OLDB", "PL:OLDB", "derived"),
        ]
        bars = dl.bars("minute", tickers=["OLDA"]).collect()
        by_security = dl.bars("minute", security="PL:OLDB").collect()
    # the old files have no security_id: it is added on read, from the listing
    assert set(bars.get_column("security_id")) == {"PL:OLDA"}
    assert_frame_equal(
        sessions_only(bars.select(STORED_COLUMNS).sort("timestamp")),
        truth(market, "minute", "OLDA", D(2023, 1, 1), D(2023, 2, 28)),
    )
    assert_frame_equal(
        sessions_only(by_security.select(STORED_COLUMNS).sort("timestamp")),
        truth(market, "minute", "OLDB", D(2023, 1, 1), D(2023, 2, 28)),
    )


def test_an_upgraded_ledger_runs_on_and_reads_old_and_new_files_together(old):
    market = old_market()
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        (old / "u.csv").write_text("ticker\nOLDA\nOLDB\n", encoding="utf-8")
        planned = run_cli(
            "plan",
            "--universe",
            "u.csv",
            "--dataset",
            "minute",
            "--from",
            "2023-03-01",
            "--to",
            "2023-03-31",
        )
        assert planned.code == 0, planned.out + planned.err
        ran = run_cli("run", "--base-url", server.url, "--unadjusted", "--workers", "2")
        assert ran.code == 0, ran.out + ran.err
    (march,) = list((old / "data" / "minute" / "ticker=OLDA").rglob("month=03/part.parquet"))
    assert pl.read_parquet(march).get_column("security_id").unique().to_list() == ["PL:OLDA"]
    with polyledger.open(old / "ledger.db", old / "data") as dl:
        bars = dl.bars("minute", tickers=["OLDA"]).collect()
    assert set(bars.get_column("security_id")) == {"PL:OLDA"}
    # in time order as read (the old months first), not only once sorted
    assert bars.get_column("timestamp").is_sorted()
    assert_frame_equal(
        sessions_only(bars.select(STORED_COLUMNS).sort("timestamp")),
        truth(market, "minute", "OLDA", D(2023, 1, 1), D(2023, 3, 31)),
    )
    checked = run_cli("audit", "--quality")
    assert checked.code == 0, checked.out + checked.err
    assert run_cli("audit", "--deep").code == 0


def _upgraded_in_place(demo: Path, work: Path, ticker: str, before: str) -> Path:
    """A copy of a fetched demo as an upgrade in place leaves it: `ticker`'s months before
    `before` written by the previous version (files without `security_id`), the later ones
    since (the nightly sync adds months to a ledger as it goes)."""
    folder = work / "upgraded"
    shutil.copytree(demo, folder)
    with sqlite3.connect(folder / "ledger.db") as con:
        rows = con.execute(
            "SELECT id, file_path FROM units WHERE dataset = 'minute' AND ticker = ? AND state = 'done' "
            "AND period < ?",
            (ticker, before),
        ).fetchall()
        assert rows
        for unit_id, relative in rows:
            path = folder / "data" / relative
            pl.read_parquet(path).drop("security_id").write_parquet(path)
            con.execute("UPDATE units SET fetched_at = '2020-01-01T00:00:00.000Z' WHERE id = ?", (unit_id,))
        con.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('security_id_since', '2021-01-01T00:00:00.000Z')"
        )
    return folder


@pytest.mark.filterwarnings("ignore::polyledger.download.UnsettledUnitsWarning")
def test_old_and_new_files_of_a_ticker_read_in_time_order_adjusted_and_built(raw_demo_download, work):
    """AAPL splits 1:4 on 2023-08-14 in the demo: with its months to June 2023 in files of
    the previous version, the split-adjusted read still divides every bar before the split
    (the adjustment walks a ticker's bars in time order), and bars built from the minutes
    are the same as from the ledger before the upgrade."""
    with polyledger.open(raw_demo_download / "ledger.db", raw_demo_download / "data") as dl:
        expected = dl.bars("minute", tickers=["AAPL"], adjust="splits").collect()
        expected_bars = dl.volume_bars("AAPL", threshold=2e5)
    folder = _upgraded_in_place(raw_demo_download, work, "AAPL", "2023-07")
    with polyledger.open(folder / "ledger.db", folder / "data") as dl:
        got = dl.bars("minute", tickers=["AAPL"], adjust="splits").collect()
        got_bars = dl.volume_bars("AAPL", threshold=2e5)
    assert got.get_column("timestamp").is_sorted()
    assert_frame_equal(got.select(STORED_COLUMNS), expected.select(STORED_COLUMNS))
    assert got_bars.select("start", "end", "volume").equals(expected_bars.select("start", "end", "volume"))

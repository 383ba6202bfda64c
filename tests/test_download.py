"""The notebook API: polyledger.open(ledger, data) -> units, bars, reference data, audit."""

from __future__ import annotations

import datetime as dt
import re
import warnings

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import DEMO_BEFORE_HISTORY, STORED_COLUMNS, read_dataset

import polyledger
from polyledger.download import STORED_BAR_SCHEMA, UnsettledUnitsWarning
from polyledger.errors import InputError


def test_units_are_the_ledgers_rows(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        units = dl.units()
        failed = dl.units("minute", "failed")
        count = dl.ledger.query("SELECT count(*) AS n FROM units")[0].n
    assert units.height == count and units.schema["period_start"] == pl.Date
    assert failed.height == 6 * DEMO_BEFORE_HISTORY and set(failed["error_class"]) == {"not_entitled"}


def test_bars_read_done_units_and_filter_by_ticker_and_session_dates(demo_download):
    data = demo_download / "data"
    with polyledger.open(demo_download / "ledger.db", data) as dl:
        with pytest.warns(UnsettledUnitsWarning):  # the demo's early months failed on purpose
            everything = dl.bars("minute").collect().select(STORED_COLUMNS).sort("ticker", "timestamp")
        window = dl.bars("minute", tickers=["AAPL", "TINY"], start="2023-03-31", end=dt.date(2023, 4, 3))
        some = window.collect()
        with pytest.warns(UnsettledUnitsWarning):
            day = dl.bars("day", tickers=["NOSUCH"]).collect()
    assert_frame_equal(everything, read_dataset(data, "minute"))
    sessions = some.select(pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date().unique())
    assert set(some["ticker"]) == {"AAPL", "TINY"}
    assert set(sessions.to_series()) == {dt.date(2023, 3, 31), dt.date(2023, 4, 3)}  # a weekend between
    assert day.height == 0 and day.columns == list(some.columns)


def test_reference_data_and_audit(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        splits = dl.reference("splits").collect()
        dividends = dl.reference("dividends", tickers=["AAPL"]).collect()
        report = dl.audit()
    assert splits.select("ticker", "split_from", "split_to").rows() == [("AAPL", 1.0, 4.0)]
    assert dividends.height == 0
    assert {d.dataset for d in report.datasets} >= {"minute", "day", "splits", "dividends"}


def test_bad_arguments_say_what_is_wrong(demo_download, tmp_path):
    with pytest.raises(InputError, match="no ledger at"):
        polyledger.open(tmp_path / "missing.db", tmp_path)
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match="unknown bar dataset 'hourly'"):
            dl.bars("hourly")
        with pytest.raises(InputError, match="invalid start '2023-02-30'"):
            dl.bars("minute", start="2023-02-30")
        # a datetime is a date to Python, but its day depends on a zone (it crashed the
        # adjusted read: found by a review)
        with pytest.raises(InputError, match="expected a date .*not a date and time"):
            dl.bars("day", adjust="splits", as_of=dt.datetime(2024, 2, 1))
        with pytest.raises(InputError, match="invalid end"):
            dl.bars("minute", end=dt.datetime(2023, 1, 31, 16, 0))


def test_a_selection_with_failed_units_warns_and_bad_selections_are_errors(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.warns(UnsettledUnitsWarning, match="3 minute units in this selection hold no bars yet"):
            early = dl.bars("minute", tickers="AAPL", start="2022-07-01", end="2022-09-30").collect()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fully settled selection is silent
            later = dl.bars("minute", tickers="AAPL", start="2023-01-01", end="2023-01-31").collect()
        with pytest.raises(InputError, match="start 2023-02-01 is after end 2023-01-01"):
            dl.bars("minute", start="2023-02-01", end="2023-01-01")
        with pytest.raises(InputError, match="unknown state 'bogus'"):
            dl.units(state="bogus")
    assert early.height == 0 and later.height > 0 and set(later["ticker"]) == {"AAPL"}


# --- found by a review of the read side: selections that read as "no trades" -----------


@pytest.mark.parametrize(
    ("ticker", "hint"),
    [("NOPE", ""), ("aapl", "did you mean 'AAPL'"), ("AAPL,TINY", "one symbol per item")],
)
def test_a_ticker_without_units_of_the_dataset_is_an_error_not_an_empty_frame(demo_download, ticker, hint):
    # unknown, wrongly cased (tickers are case-sensitive) or two in one string: read, it
    # looked like a symbol that never traded. One with units, all failed, is no error
    # (NOSUCH, above: it warns)
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(
            InputError, match=f"no minute units of {re.escape(repr(ticker))} .*case-sensitive.*{hint}"
        ):
            dl.bars("minute", tickers=["AAPL", ticker], start="2023-06-01")


def test_reference_reads_refuse_a_ticker_without_units_too(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match="no dividends units of 'NOPE'"):
            dl.reference("dividends", tickers=["AAPL", "NOPE"])


def test_information_bars_refuse_a_ticker_without_units_too(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match="no minute units of 'NOPE'"):
            dl.volume_bars(["TINY", "NOPE"], threshold=1e5, start="2023-06-01", end="2023-06-30")


def test_an_empty_ticker_list_reads_nothing_not_everything(demo_download):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        aapl = dl.listings(tickers=["AAPL"])["security_id"][0]
        assert dl.reference("splits").collect().height > 0  # there is something to leave out
        bars = dl.bars("minute", tickers=[]).collect()
        of_security = dl.bars("minute", security=aapl, tickers=[]).collect()
        splits = dl.reference("splits", tickers=[]).collect()
    assert bars.height == of_security.height == splits.height == 0
    assert dict(bars.schema) == STORED_BAR_SCHEMA and splits.columns[0] == "ticker"


def test_a_security_asked_for_under_a_symbol_it_never_used_is_an_error(demo_download):
    # it read the whole dataset (tickers=[] after the restriction)
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        aapl = dl.listings(tickers=["AAPL"])["security_id"][0]
        with pytest.raises(
            InputError, match=f"security '{aapl}' never traded as 'TINY': its symbols are AAPL$"
        ):
            dl.bars("minute", security=aapl, tickers=["TINY"])


def test_a_security_of_grouped_daily_bars_is_an_error(demo_download):
    # grouped bars are the whole market's, attributed to no listing: it read nothing
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        aapl = dl.listings(tickers=["AAPL"])["security_id"][0]
        with pytest.raises(
            InputError, match="grouped_daily bars carry no security_id: choose them with tickers="
        ):
            dl.bars("grouped_daily", security=aapl)


def test_as_of_without_adjust_is_an_error(demo_download):
    # it read raw prices, on no share basis, without a word
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match="as_of applies to adjusted reads: pass adjust='splits' or"):
            dl.bars("day", tickers=["AAPL"], as_of="2023-06-01")


@pytest.mark.parametrize("start", [20240201, 2024])
def test_a_start_that_is_no_date_nor_text_is_a_one_line_error(demo_download, start):
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match=f"invalid start {start}: expected a date"):
            dl.bars("minute", tickers=["AAPL"], start=start)  # it raised a TypeError

"""The notebook API: polyledger.open(ledger, data) -> units, bars, reference data, audit."""

from __future__ import annotations

import datetime as dt
import re
import warnings

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import (
    DEMO_BEFORE_HISTORY,
    STORED_COLUMNS,
    at_stock_sqlite_limit,
    read_dataset,
    run_cli,
    write_universe,
)

import polyledger
from polyledger.download import STORED_BAR_SCHEMA, UnplannedDaysWarning, UnsettledUnitsWarning
from polyledger.errors import InputError
from polyledger.ledger import Ledger, PlannedUnit, queries
from polyledger.listings import Listing
from polyledger.plan import plan

D = dt.date


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
    # a typo in the data folder: said at once, not as a reader's FileNotFoundError later
    # (found by a new user's review)
    with pytest.raises(
        InputError, match=r"data folder .*nodata does not exist, yet the ledger lists [\d,]+ files"
    ):
        polyledger.open(demo_download / "ledger.db", tmp_path / "nodata")
    with polyledger.open(demo_download / "ledger.db", demo_download / "data") as dl:
        with pytest.raises(InputError, match="unknown bar dataset 'hourly'"):
            dl.bars("hourly")
        with pytest.raises(InputError, match="invalid start '2023-02-30'"):
            dl.bars("minute", start="2023-02-30")
        with pytest.raises(InputError, match="invalid end '20230301'"):  # taken by 3.11's fromisoformat
            dl.bars("minute", end="20230301")
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


def _read(dl, *args, **kwargs):  # type: ignore[no-untyped-def]
    """The bars and the messages of the UnplannedDaysWarnings the read gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = dl.bars(*args, **kwargs).collect()
    return frame, [str(w.message) for w in caught if w.category is UnplannedDaysWarning]


def test_reading_months_the_ledger_never_planned_is_not_silent(work, server):
    """Found by a review: `plan` January, then `plan` March: the ledger's record of the
    plan (`planned`) said minute bars from 2024-01-01 to 2024-03-31, `audit` said
    COMPLETE (exit 0), and `dl.bars(start="2024-01-01", end="2024-03-31")` returned
    January and March without a word about February: a hole read as a month without
    trades. The read warns (UnplannedDaysWarning, naming the hole) and `audit` reports it
    (`unplanned`, exit 1); once February is planned and run, both are silent."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-03-01", "--to", "2024-03-31").code == 0
    assert run_cli("run", "--base-url", server.url).code == 0
    with polyledger.open("ledger.db", "data") as dl:
        frame, said = _read(dl, "minute", tickers=["TINY"], start="2024-01-01", end="2024-03-31")
        inside, quiet = _read(dl, "minute", tickers=["TINY"], start="2024-03-04", end="2024-03-08")
    assert set(frame.get_column("timestamp").dt.month().to_list()) == {1, 3}  # February is missing
    assert said == [
        "20 trading days in this selection are in no minute unit (never planned, or planned only in "
        "part), so they read as days without bars: TINY 2024-02-01..2024-02-29; plan them "
        "(`polyledger plan`) or narrow start/end"
    ]
    assert inside.height > 0 and quiet == []
    audited = run_cli("audit")
    assert audited.code == 1 and "minute: INCOMPLETE" in audited.out, audited.out
    assert "unplanned: 20 trading days of 1 ticker " in audited.out
    assert "TINY 2024-02-01..2024-02-29: 20 trading days" in audited.out
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-02-01", "--to", "2024-02-29").code == 0
    assert run_cli("run", "--base-url", server.url).code == 0
    with polyledger.open("ledger.db", "data") as dl:
        frame, said = _read(dl, "minute", tickers=["TINY"], start="2024-01-01", end="2024-03-31")
    assert set(frame.get_column("timestamp").dt.month().to_list()) == {1, 2, 3} and said == []
    assert run_cli("audit").code == 0


def test_days_outside_a_listing_or_the_plans_are_told_apart_from_holes(tmp_path):
    """A symbol has no units outside its listing windows by design (before its listing,
    after its delisting, between a reused symbol's two companies): no warning there. Days
    no unit covers inside them are named, per ticker: a month never planned, the part of
    a month a plan left out, a read reaching past the last plan; an open bound only
    judges the days between the ticker's own units; a day-keyed dataset names days."""
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        members = [
            Listing("GONE", last_day=D(2024, 2, 20)),
            Listing("NEWCO", first_day=D(2024, 3, 14)),
            Listing("REUSED", last_day=D(2024, 1, 10), composite_figi="BBG000000RU1"),
            Listing("REUSED", D(2024, 3, 5), D(2024, 3, 28), composite_figi="BBG000000RU2"),
            "TINY",
        ]
        plan(ledger, members, "minute", D(2024, 1, 1), D(2024, 3, 31))
        plan(ledger, ["TINY"], "minute", D(2024, 6, 1), D(2024, 6, 15))
        plan(ledger, [], "grouped_daily", D(2024, 1, 2), D(2024, 1, 5))
        plan(ledger, [], "grouped_daily", D(2024, 1, 10), D(2024, 1, 12))
    with polyledger.open(path, tmp_path / "data") as dl:
        _, listed = _read(dl, "minute", start="2024-01-01", end="2024-03-31")
        _, later = _read(dl, "minute", tickers=["GONE", "REUSED"], start="2024-01-01", end="2024-06-28")
        _, tiny = _read(dl, "minute", tickers=["TINY"], start="2024-01-01", end="2024-06-28")
        _, between = _read(dl, "minute", tickers=["TINY"])
        _, days = _read(dl, "grouped_daily", tickers=["AAPL"], start="2024-01-02", end="2024-01-12")
    assert listed == [] and later == []
    assert tiny == [
        "53 trading days in this selection are in no minute unit (never planned, or planned only in "
        "part), so they read as days without bars: TINY 2024-04-01..2024-05-31, TINY "
        "2024-06-17..2024-06-28; plan them (`polyledger plan`) or narrow start/end"
    ]
    assert len(between) == 1 and ": TINY 2024-04-01..2024-05-31; plan them" in between[0]
    assert len(days) == 1 and ": 2024-01-08..2024-01-09; plan them" in days[0]


# a universe of every US listing: more symbols than a stock SQLite binds at once (32766)
MANY = 40_000
JANUARY, FEBRUARY = (D(2024, 1, 1), D(2024, 1, 31)), (D(2024, 2, 1), D(2024, 2, 29))


def many_tickers(count: int) -> list[str]:
    return [f"T{i:05d}" for i in range(count)]


def plan_many(ledger: Ledger, tickers: list[str]) -> None:
    """January of every ticker, and February of the first three (a ticker's units in time order)."""
    ledger.add_units(PlannedUnit("minute", t, *JANUARY) for t in tickers)
    ledger.add_units(PlannedUnit("minute", t, *FEBRUARY) for t in tickers[:3])


def test_a_read_of_more_tickers_than_sqlite_binds_at_once_selects_every_one(tmp_path):
    """`bars(tickers=...)` asked the ledger of its tickers in one IN list each (the check
    of unknown ones, the selection of their units): a universe's 40,000 stopped the read
    with 'too many SQL variables' on a stock SQLite. They are asked in slices: every
    ticker's unit is selected (none fetched yet: the warning counts them)."""
    path = tmp_path / "ledger.db"
    tickers = many_tickers(MANY)
    with Ledger(path) as ledger:
        plan_many(ledger, tickers)
    with polyledger.open(path, tmp_path / "data") as dl:
        at_stock_sqlite_limit(dl.ledger)
        with pytest.warns(UnsettledUnitsWarning, match=f"{MANY} minute units .* hold no bars yet"):
            frame = dl.bars("minute", tickers=tickers, start="2024-01-02", end="2024-01-31").collect()
    assert frame.height == 0


def test_the_units_of_more_tickers_than_sqlite_binds_at_once_are_selected_in_order(tmp_path):
    """What a read asks of a universe's tickers, in slices: the units in the order one
    query gave them, and which tickers have units."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        at_stock_sqlite_limit(ledger)
        check_units_of_many_tickers(ledger, many_tickers(MANY))


def check_units_of_many_tickers(ledger: Ledger, tickers: list[str]) -> None:
    """The ledger's reads of a universe's tickers (SQLite here, PostgreSQL in test_postgres),
    asked in reverse and with a repeat: each unit once, in ticker and time order."""
    plan_many(ledger, tickers)
    asked = [*reversed(tickers), tickers[0]]
    units = queries.selected_units(ledger, "minute", asked, None, None)
    expected = [(t, str(JANUARY[0])) for t in tickers]
    expected[1:1] = [(tickers[0], str(FEBRUARY[0]))]
    expected[3:3] = [(tickers[1], str(FEBRUARY[0]))]
    expected[5:5] = [(tickers[2], str(FEBRUARY[0]))]
    assert [(row.ticker, str(row.period_start)[:10]) for row in units] == expected
    assert queries.tickers_with_units(ledger, "minute", [*asked, "NOSUCH"]) == set(tickers)
    assert queries.tickers_with_units(ledger, None, ["t00001", "NOSUCH"], ignore_case=True) == {"T00001"}

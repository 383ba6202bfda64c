"""Edges of the read path found by a review (adjust on read, selection by security, grouped
daily, the forms `tickers=` comes in): each test failed on the code of its day for the
reason its docstring gives.

One small raw download, built once for the module with the stand-in API:

- TWOD pays two cash dividends with the same ex-date (a regular 0.05 and a special 0.30);
- STALE goes ex 0.40 on Monday 2024-01-08; its day bars of 2023 are fetched, its day unit
  of 2024 is planned but not fetched yet (pending), its minute bars cover both years;
- MINO has minute units only (no day units);
- grouped daily bars for 2024-03-04..08.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
import pytest

import polyledger
from polyledger.adjust import UnsettledAdjustmentWarning
from polyledger.datasets.reference import plan_reference
from polyledger.download import UnsettledUnitsWarning
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import Dividend, Listing, StandInServer, SyntheticMarket
from polyledger.universe import read_members

KEY = "review-read-key"
D = dt.date
TWOD_EX, TWOD_CASH = D(2024, 2, 14), (0.05, 0.30)
STALE_EX, STALE_CASH = D(2024, 1, 8), 0.4
MINO_EX = D(2024, 3, 12)  # a dividend paid in Canadian dollars
LISTINGS = [
    Listing(
        "TWOD",
        bars_per_day=40,
        dividends=(Dividend(TWOD_EX, TWOD_CASH[0]), Dividend(TWOD_EX, TWOD_CASH[1], frequency=0)),
    ),
    Listing("STALE", bars_per_day=40, dividends=(Dividend(STALE_EX, STALE_CASH),)),
    Listing("MINO", bars_per_day=40, dividends=(Dividend(MINO_EX, 0.5, currency="CAD"),)),
]
UNIVERSE = "ticker,list_date,delisted_utc,security_id\nTWOD,,,\nSTALE,,,\nMINO,,,\n"


def _session(frame: pl.DataFrame) -> pl.Series:
    return frame["timestamp"].dt.convert_time_zone("America/New_York").dt.date()


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=5)


@pytest.fixture(scope="module")
def folder(market: SyntheticMarket, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("review-read")
    (folder / "u.csv").write_text(UNIVERSE, encoding="utf-8")
    members = read_members(folder / "u.csv")
    by_name = {member.ticker: member for member in members}
    with StandInServer(market, api_keys=(KEY,)) as api, Ledger(folder / "ledger.db") as ledger:
        plan(ledger, members, "minute", D(2023, 12, 1), D(2024, 3, 31))
        plan(ledger, [by_name["TWOD"]], "day", D(2023, 12, 1), D(2024, 3, 31))
        plan(ledger, [by_name["STALE"]], "day", D(2023, 12, 1), D(2023, 12, 31))
        plan(ledger, members, "grouped_daily", D(2024, 3, 4), D(2024, 3, 8))
        plan_reference(ledger, ["TWOD", "STALE", "MINO"], "splits", D(2024, 8, 1))
        plan_reference(ledger, ["TWOD", "STALE", "MINO"], "dividends", D(2024, 8, 1))
        options = RunOptions(workers=2, rate=500, adjusted=False)
        assert (
            Run(ledger, BarStore(folder / "data"), api_key=KEY, base_url=api.url, options=options)
            .execute()
            .ok
        )
        # STALE's 2024 day bars: planned, not fetched yet
        plan(ledger, [by_name["STALE"]], "day", D(2024, 1, 1), D(2024, 3, 31))
    return folder


def _open(folder: Path) -> polyledger.Download:
    return polyledger.open(folder / "ledger.db", folder / "data")


def test_two_cash_dividends_on_one_ex_date_adjust_by_their_sum(folder):
    """TWOD pays 0.05 and 0.30, both ex 2024-02-14: one distribution of 0.35 per share on
    that day. Bars before it should be multiplied by 1 - 0.35 / P (P the previous close),
    which is what makes the adjusted close before the ex-date equal P - 0.35. The code
    makes one factor per dividend from the same P and multiplies them:
    (1 - 0.05/P)(1 - 0.30/P) = 1 - 0.35/P + 0.015/P^2, i.e. the pre-ex prices are too high
    and the ex-date total return is understated (each special dividend paid beside a
    regular one is adjusted this way)."""
    with _open(folder) as dl:
        raw = dl.bars("day", tickers=["TWOD"]).collect()
        total = dl.bars("day", tickers=["TWOD"], adjust="splits+dividends").collect()
    session = _session(raw)
    previous = raw.filter(session < TWOD_EX)["close"][-1]
    want = 1 - sum(TWOD_CASH) / previous
    got = (total["close"] / raw["close"]).filter(session < TWOD_EX)
    product = (1 - TWOD_CASH[0] / previous) * (1 - TWOD_CASH[1] / previous)
    assert (got - want).abs().max() < 1e-9, (
        f"factor {got[0]:.6f}; 1 - (0.05 + 0.30) / {previous} = {want:.6f}; the product {product:.6f}"
    )
    # so the adjusted close of the last session before the ex-date is P - D1 - D2
    assert total.filter(session < TWOD_EX)["close"][-1] == pytest.approx(previous - sum(TWOD_CASH), abs=1e-9)


def test_the_stand_in_factor_of_two_dividends_on_one_ex_date_is_of_their_sum(folder, market):
    """The stand-in's historical_adjustment_factor follows the same rule as the library: both
    of TWOD's records of 2024-02-14 carry 1 - (0.05 + 0.30) / P, which is what adjusting on
    read applies to the bars before it."""
    with _open(folder) as dl:
        raw = dl.bars("day", tickers=["TWOD"]).collect()
        total = dl.bars("day", tickers=["TWOD"], adjust="splits+dividends").collect()
    session = _session(raw)
    previous = raw.filter(session < TWOD_EX)["close"][-1]
    records = market.dividend_records("TWOD")
    assert sorted(r["cash_amount"] for r in records) == sorted(TWOD_CASH)
    for record in records:
        assert record["historical_adjustment_factor"] == pytest.approx(
            1 - sum(TWOD_CASH) / previous, abs=1e-6
        )
    got = (total["close"] / raw["close"]).filter(session < TWOD_EX)
    assert (got - records[0]["historical_adjustment_factor"]).abs().max() < 1e-6


def test_the_previous_close_is_the_last_session_before_the_ex_date_not_an_older_day_bar(folder, market):
    """STALE goes ex 0.40 on Monday 2024-01-08. Its last session before is Friday 01-05
    (its minute bars are there); its 2024 day unit is not fetched yet, so the newest day
    bar is Friday 2023-12-29. The previous close must be 01-05's (as the API's
    historical_adjustment_factor has it), not a close five sessions older: the code
    takes any day bar of the 14 days before over a later session in the minute bars,
    silently (no warning)."""
    with _open(folder) as dl:
        raw = dl.bars("minute", tickers=["STALE"]).collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total = dl.bars("minute", tickers=["STALE"], adjust="splits+dividends").collect()
        with pytest.warns(UnsettledUnitsWarning, match="1 pending"):  # the premise: 2024's day unit
            day = dl.bars("day", tickers=["STALE"]).collect()
    session = _session(raw)
    last_session = session.filter(session < STALE_EX).max()
    assert last_session == D(2024, 1, 5) and _session(day).max() == D(2023, 12, 29)
    previous = raw.filter(session == last_session)["close"][-1]
    want = 1 - STALE_CASH / previous
    api_factor = market.dividend_records("STALE")[0]["historical_adjustment_factor"]
    assert abs(want - api_factor) < 1e-6  # the API's own factor uses 01-05's close
    got = (total["close"] / raw["close"]).filter(session < STALE_EX)
    stale = 1 - STALE_CASH / day["close"][-1]
    assert (got - want).abs().max() < 1e-9, (
        f"factor {got[0]:.6f}; from 01-05's close {want:.6f}; from 2023-12-29's {stale:.6f}; "
        f"warnings: {[str(w.message) for w in caught]}"
    )


def test_a_wrongly_cased_ticker_of_grouped_daily_is_not_a_silent_empty_frame(folder):
    """bars()' docstring and docs/data.md: a ticker the ledger has no units of in the
    dataset (misspelt, or cased otherwise) is an error, not an empty frame. For
    grouped_daily, `tickers=["twod"]` reads no bar, with no error and no warning, while
    "TWOD" reads 5."""
    with _open(folder) as dl:
        assert dl.bars("grouped_daily", tickers=["TWOD"]).collect().height == 5
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read = dl.bars("grouped_daily", tickers=["twod"]).collect()
            except InputError:
                return  # told: fine
    assert caught, f"{read.height} bars, no error, no warning"


def test_a_security_without_units_of_the_dataset_is_not_a_silent_empty_frame(folder):
    """MINO has minute units only. By ticker, a day read of it is an InputError ("the
    ledger has no day units of 'MINO'"); by its security, the same read returns an empty
    frame with no error and no warning, as if the company never traded."""
    with _open(folder) as dl:
        with pytest.raises(InputError, match="no day units"):
            dl.bars("day", tickers=["MINO"])
        security = dl.listings(tickers=["MINO"])["security_id"].item()
        assert dl.bars("minute", security=security).collect().height > 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read = dl.bars("day", security=security).collect()
            except InputError:
                return  # told: fine
    assert caught, f"{read.height} day bars of {security}, no error, no warning"


def test_grouped_daily_tickers_are_checked_against_the_tickers_its_files_hold(folder):
    """grouped_daily has no unit per ticker: a ticker is known when its fetched files hold
    it, in the read's span or, failing that, on any other fetched day (a symbol that did
    not trade in the span is not an error, as with units of another period)."""
    with _open(folder) as dl:
        with pytest.raises(InputError) as cased:
            dl.bars("grouped_daily", tickers=["TWOD", "twod"])
        with pytest.raises(
            InputError, match=r"no grouped_daily bars of 'NOPE' \(tickers are case-sensitive\)"
        ):
            dl.bars("grouped_daily", tickers=["NOPE"], start="2024-03-04", end="2024-03-05")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # days planned in no unit: warned of, not refused
            later = dl.bars("grouped_daily", tickers=["TWOD"], start="2024-05-01", end="2024-05-31")
        assert later.collect().height == 0
        assert dl.bars("grouped_daily", tickers=["MINO"], start="2024-03-08").collect().height == 1
    message = str(cased.value)
    assert "no grouped_daily bars of 'twod'" in message and "did you mean 'TWOD'?" in message
    assert "\n" not in message


def test_a_read_by_security_refuses_as_a_read_by_ticker_does(folder):
    """The security read's error names the security and its symbols, on one line; naming
    a symbol of it too is checked as a read by ticker is; `tickers=[]` still reads nothing."""
    with _open(folder) as dl:
        security = dl.listings(tickers=["MINO"])["security_id"].item()
        with pytest.raises(InputError) as refused:
            dl.bars("day", security=security)
        with pytest.raises(InputError, match="no day units of 'MINO'"):
            dl.bars("day", security=security, tickers=["MINO"])
        assert dl.bars("day", security=security, tickers=[]).collect().height == 0
        twod = dl.listings(tickers=["TWOD"])["security_id"].item()
        assert dl.bars("day", security=twod).collect().height > 0
    assert str(refused.value) == (
        f"the ledger has no day units of security '{security}' (its symbols: MINO): see .units() and .listings()"
    )


def test_tickers_may_be_any_iterable_of_strings_read_once(folder):
    """A generator was spent by the check and read 0 rows; a polars Series or a numpy array
    raised "truth value is ambiguous". Any iterable of strings is read once; anything else
    is a one-line InputError."""
    import numpy as np

    with _open(folder) as dl:
        want = dl.bars("day", tickers=["TWOD"]).collect()
        assert want.height > 0
        given = {
            "generator": (t for t in ["TWOD"]),
            "polars Series": pl.Series(["TWOD"]),
            "numpy array": np.array(["TWOD"]),
            "tuple": ("TWOD",),
        }
        for kind, tickers in given.items():
            assert dl.bars("day", tickers=tickers).collect().equals(want), kind
        assert dl.bars("day", tickers=pl.Series([], dtype=pl.String)).collect().height == 0  # as []
        assert dl.reference("dividends", tickers=pl.Series(["TWOD"])).collect().height == 2
        assert dl.listings(tickers=(t for t in ["TWOD"])).height == 1
        for bad, match in (
            (5, "invalid tickers int"),
            ([5], "invalid ticker 5"),
            (pl.Series([None, "TWOD"]), "invalid ticker None"),
        ):
            with pytest.raises(InputError, match=match) as refused:
                dl.bars("day", tickers=bad)
            assert "\n" not in str(refused.value)


def test_a_dividend_in_another_currency_than_the_bars_is_left_out_and_said(folder):
    """A few foreign issuers' dividends are reported in their own currency: 0.50 CAD taken
    off a price in dollars would be the wrong size (found by a review). It is left out of
    the adjustment with the warning every dividend left out gets; the bars stay raw."""
    with _open(folder) as dl:
        (currency,) = dl.reference("dividends", tickers=["MINO"]).collect().get_column("currency")
        raw = dl.bars("minute", tickers=["MINO"]).collect()
        with pytest.warns(UnsettledAdjustmentWarning, match=r"MINO 2024-03-12 \(paid in CAD"):
            total = dl.bars("minute", tickers=["MINO"], adjust="splits+dividends").collect()
    assert currency == "CAD"
    assert raw.filter(_session(raw) < MINO_EX).height > 0
    assert total.select("open", "close").equals(raw.select("open", "close"))


def test_the_flat_file_routes_staged_days_are_no_dataset_to_read(raw_demo_download):
    """`dl.bars("minute_files")` named the route's staged days, deleted once their months
    are built, as a dataset to read, and read nothing (found by a new user): a one-line
    error that names the dataset the months are read as."""
    with polyledger.open(raw_demo_download / "ledger.db", raw_demo_download / "data") as dl:
        with pytest.raises(InputError, match="staged days.*read minute$"):
            dl.bars("minute_files", tickers=["AAPL"])
        with pytest.raises(InputError, match="choose one of minute, day, grouped_daily$"):
            dl.bars("nothere")

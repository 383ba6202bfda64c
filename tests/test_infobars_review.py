"""Information-driven bars, as a researcher calls them (found by an adversarial review):
the lists they are given, and the thresholds a typo or a computation can produce."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_infobars import HAND

import polyledger
from polyledger import infobars
from polyledger.errors import InputError
from polyledger.infobars import information_bars

pytestmark = pytest.mark.filterwarnings(
    "ignore::polyledger.download.UnsettledUnitsWarning"  # the raw demo's failed months, on purpose
)


def test_a_universe_files_tickers_give_each_securitys_bars_once(raw_demo_download):
    """Scenario: a researcher builds dollar bars for the tickers of the universe file that
    `polyledger universe` wrote, `dl.dollar_bars(universe["ticker"], ...)`. The file has one
    row per *listing* (docs/listings.md), so the reused symbol ZETA is on two rows; and
    `dl.listings()["security_id"]` has one row per listing, so a renamed company (FACE,
    then MTVS) lists its security twice.

    What goes wrong: `infobars.build` reads each name of the list once per occurrence, so
    every bar of ZETA's two companies (and of the renamed security) comes twice: counts,
    returns and volumes per security are doubled, while `dl.bars` (a SQL `IN`) reads each
    ticker once. Failed: 2x the bars of a single read."""
    folder = raw_demo_download
    universe = pl.read_csv(folder / "universe.csv")
    assert universe.filter(pl.col("ticker") == "ZETA").height == 2  # two listings of one symbol
    with polyledger.open(folder / "ledger.db", folder / "data") as dl:
        renamed = dl.listings(tickers=["FACE", "MTVS"])["security_id"]
        assert renamed.n_unique() == 1 and renamed.len() == 2  # one company, two listings
        zeta_alone = dl.dollar_bars("ZETA", bars_per_day=5)
        from_file = dl.dollar_bars(universe["ticker"], bars_per_day=5)
        security_alone = dl.volume_bars(securities=renamed[0], threshold=1e5)
        from_listings = dl.volume_bars(securities=renamed, threshold=1e5)
        minutes_from_file = dl.bars("minute", tickers=universe["ticker"]).collect()
    assert minutes_from_file.filter(pl.col("ticker") == "ZETA").height == (
        minutes_from_file.filter(pl.col("ticker") == "ZETA").unique(["security_id", "timestamp"]).height
    )  # a plain read gives each minute once
    zeta = from_file.filter(pl.col("ticker") == "ZETA")
    assert zeta.height == zeta_alone.height, "ZETA's bars repeated, once per row of the universe"
    assert from_listings.height == security_alone.height, "the security's bars repeated, once per listing"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": math.inf},
        {"bars_per_day": math.inf},
        {"threshold": "1e6"},  # read from a config file or a widget, unconverted
        {"bars_per_day": "50"},
        {"threshold": True},  # a bool is an int to Python: a threshold of 1
        {"bars_per_day": True},
    ],
)
def test_thresholds_that_are_no_finite_number_are_one_line_errors(kwargs):
    """Scenario: a threshold computed upstream overflows to inf (or `bars_per_day` does), or a
    threshold arrives as a string, or as True.

    What goes wrong: inf passes `threshold > 0`, so no bar ever closes (bars_per_day=inf
    gives every session a threshold of 0, which counts as "measured nothing"): an empty
    frame, silently, as if nothing traded; a string fails with a bare TypeError
    (`'>' not supported between instances of 'str' and 'int'`); True is taken as 1 (the
    `window` check refuses a bool for that very reason). Failed: DID NOT RAISE / TypeError."""
    with pytest.raises(InputError, match="must be positive"):
        information_bars(HAND, "volume", **kwargs)


@pytest.mark.parametrize("tickers", [123, 4.5])
def test_tickers_that_are_no_list_are_a_one_line_error(raw_demo_download, tickers):
    """Scenario: `dl.volume_bars(123, threshold=...)`, a wrong argument in first place.

    What goes wrong: `infobars.build` calls `list(tickers)` itself: a bare TypeError ('int'
    object is not iterable), where `dl.bars("minute", tickers=123)` says in one line what is
    wrong (`_ticker_list`). Failed: TypeError."""
    folder = raw_demo_download
    with polyledger.open(folder / "ledger.db", folder / "data") as dl:
        with pytest.raises(InputError, match="invalid tickers"):
            dl.volume_bars(tickers, threshold=1e5)
        with pytest.raises(InputError, match="invalid securities"):
            dl.volume_bars(securities=tickers, threshold=1e5)


def test_bad_read_arguments_are_errors_even_for_an_empty_list(raw_demo_download):
    """Scenario: a notebook filters a universe down to no ticker (or no security), then asks
    for bars with a misspelt `adjust` or start after end.

    What goes wrong: the read's arguments are checked only by each ticker's `dl.bars`, so
    with no ticker nothing checks them: an empty frame, where `dl.bars("minute",
    tickers=[], adjust="split")` is an error. Failed: DID NOT RAISE."""
    folder = raw_demo_download
    with polyledger.open(folder / "ledger.db", folder / "data") as dl:
        assert dl.bars("minute", tickers=[]).collect().height == 0
        with pytest.raises(InputError, match="unknown adjust"):
            dl.bars("minute", tickers=[], adjust="split")
        with pytest.raises(InputError, match="unknown adjust"):
            dl.volume_bars([], threshold=1e5, adjust="split")
        with pytest.raises(InputError, match="is after end"):
            dl.dollar_bars(securities=[], threshold=1e6, start="2024-02-01", end="2024-01-01")


def test_a_misspelt_ticker_is_refused_before_any_bars_are_built(raw_demo_download, monkeypatch):
    """Scenario: bars for a long list of tickers, the last one misspelt (or of another case).

    What goes wrong: each ticker is checked only when its turn comes, so every ticker before
    it is read and built (one at a time: minutes to hours over a universe) and then thrown
    away by the error (so is an unknown security_id). The check is one ledger query for the
    whole list. Failed: the bars of AAPL and TINY (and of TINY's security, before 'NOPE')
    were built before the errors."""
    built: list[str] = []
    real = infobars.information_bars

    def counted(minutes, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(minutes["ticker"][0])
        return real(minutes, *args, **kwargs)

    monkeypatch.setattr(infobars, "information_bars", counted)
    folder = raw_demo_download
    with polyledger.open(folder / "ledger.db", folder / "data") as dl:
        with pytest.raises(InputError, match="no minute units of 'tiny'"):
            dl.volume_bars(["AAPL", "TINY", "tiny"], threshold=1e5)
        with pytest.raises(InputError, match="unknown security_id 'NOPE'"):
            dl.volume_bars(securities=[dl.listings(tickers="TINY")["security_id"][0], "NOPE"], threshold=1e5)
    assert built == [], f"bars built before the error: {built}"


@pytest.mark.parametrize(
    "threshold",
    [Decimal("5"), np.array(5.0)],
    ids=["Decimal", "0-d ndarray"],
)
def test_a_threshold_that_is_a_decimal_or_a_0d_array_still_builds_bars(threshold):
    """A fixed threshold read from PostgreSQL (NUMERIC comes back as `decimal.Decimal`:
    `SELECT avg(...)` through psycopg), or left as a 0-d array by numpy code, built bars on
    fa31484 (`float(threshold)` is all the threshold is used through). The day's check
    asks `isinstance(value, numbers.Real)`, which neither is: a legitimate, positive,
    finite number is refused with "must be positive and finite (a number)"."""
    want = information_bars(HAND, "volume", threshold=5.0)
    got = information_bars(HAND, "volume", threshold=threshold)
    assert got.equals(want)


def test_a_bars_per_day_the_check_accepts_is_not_a_crash_deep_in_polars():
    """`bars_per_day=Fraction(1)` passes the day's check (a `numbers.Real`, positive,
    finite), then fails deep inside (numpy divides into an object array, polars refuses
    `is_not_nan` on it): the bare polars error the check exists to prevent. Either it is
    refused in one line or it is used as the number it is (`float(bars_per_day)`)."""
    want = information_bars(HAND, "volume", bars_per_day=1.0)
    try:
        got = information_bars(HAND, "volume", bars_per_day=Fraction(1))
    except InputError:
        return
    assert got.equals(want)


def test_a_reads_warnings_point_at_the_callers_line_whichever_call_led_there(raw_demo_download):
    """A warning names the notebook's own line, from `dl.bars` and from the bar builders
    alike (found by a new user: the builders' warnings pointed into infobars.py, where a
    fixed stack depth lands when the read is called one frame deeper)."""
    import warnings

    with polyledger.open(raw_demo_download / "ledger.db", raw_demo_download / "data") as dl:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dl.dollar_bars(["AAPL"], threshold=1e6)
            dl.bars("minute", tickers=["AAPL"], adjust="splits").collect()
    assert caught and {Path(w.filename) for w in caught} == {Path(__file__)}, [
        (w.filename, w.lineno, w.category.__name__) for w in caught
    ]


@pytest.mark.parametrize("flag", ["yes", "no", 1, None])
def test_keep_partial_is_true_or_false(flag):
    """`keep_partial="no"` is truthy: the unfinished bar kept against what was asked
    (found by a new user: any value was accepted)."""
    with pytest.raises(InputError, match="keep_partial must be True or False"):
        information_bars(HAND, "volume", threshold=5.0, keep_partial=flag)

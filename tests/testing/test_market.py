"""The synthetic market is the truth the downloader is checked against: it must be
deterministic, independent of how a range is split, and sane (how fast it is, is a figure
printed by `bench/standin.py`)."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyledger.testing import Listing, SyntheticMarket
from polyledger.testing.market import BAR_SCHEMA, ET, et_midnight_ms

D = dt.date
MARCH = (et_midnight_ms(D(2024, 3, 1)), et_midnight_ms(D(2024, 4, 1)))


def et_times(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.with_columns(
        et=pl.from_epoch("t", time_unit="ms")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone("America/New_York")
    )


def test_schema_is_exact_and_unknown_ticker_is_empty(market: SyntheticMarket) -> None:
    bars = market.minute_bars("DENSE", *MARCH)
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.height > 10_000
    for empty in (
        market.minute_bars("NOPE", *MARCH),
        market.day_bars("NOPE", *MARCH),
        market.minute_bars("DENSE", MARCH[1], MARCH[0]),  # reversed window
    ):
        assert empty.height == 0 and empty.schema == pl.Schema(BAR_SCHEMA)
    assert market.knows("DENSE") and not market.knows("NOPE")


def test_deterministic_across_instances_and_other_listings(market: SyntheticMarket) -> None:
    again = SyntheticMarket([Listing("DENSE", bars_per_day=900)], seed=7)  # alone this time
    assert again.minute_bars("DENSE", *MARCH).equals(market.minute_bars("DENSE", *MARCH))
    other_seed = SyntheticMarket([Listing("DENSE", bars_per_day=900)], seed=8)
    assert not other_seed.minute_bars("DENSE", *MARCH).equals(market.minute_bars("DENSE", *MARCH))
    # different tickers with the same listing shape still get different bars
    assert not market.minute_bars("SPARSE", *MARCH)["t"].equals(market.minute_bars("MID", *MARCH)["t"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ticker=st.sampled_from(["DENSE", "SPARSE", "NEWCO"]),
    cuts=st.lists(st.integers(min_value=MARCH[0], max_value=MARCH[1]), max_size=6),
)
def test_any_split_of_a_range_gives_the_same_bars(
    market: SyntheticMarket, ticker: str, cuts: list[int]
) -> None:
    # arbitrary ms cut points, including ones that fall inside a minute or a session
    edges = [MARCH[0], *sorted(cuts), MARCH[1]]
    pieces = [market.minute_bars(ticker, a, b) for a, b in itertools.pairwise(edges)]
    assert pl.concat(pieces).equals(market.minute_bars(ticker, *MARCH))
    day_pieces = [market.day_bars(ticker, a, b) for a, b in itertools.pairwise(edges)]
    assert pl.concat(day_pieces).equals(market.day_bars(ticker, *MARCH))


def test_bars_helper_limit_and_order_match_the_window(market: SyntheticMarket) -> None:
    whole = market.minute_bars("MID", *MARCH)
    assert market.bars("minute", "MID", *MARCH, limit=777).equals(whole.head(777))
    assert market.bars("minute", "MID", *MARCH, limit=50, descending=True).equals(whole.reverse().head(50))
    days = market.day_bars("MID", et_midnight_ms(D(2020, 1, 1)), et_midnight_ms(D(2024, 1, 1)))
    assert market.bars("day", "MID", et_midnight_ms(D(2020, 1, 1)), et_midnight_ms(D(2024, 1, 1))).equals(
        days
    )


@pytest.mark.parametrize("ticker", ["DENSE", "SPARSE", "MID", "NEWCO"])
def test_bars_are_sane(market: SyntheticMarket, ticker: str) -> None:
    bars = et_times(market.minute_bars(ticker, et_midnight_ms(D(2024, 1, 1)), et_midnight_ms(D(2024, 7, 1))))
    assert bars.height > 0
    assert bars["t"].is_sorted() and bars["t"].n_unique() == bars.height
    assert (bars["t"] % 60_000 == 0).all()
    o, h, low, c, vw = (pl.col(x) for x in ("o", "h", "l", "c", "vw"))
    checks = bars.select(
        positive=(low > 0).all(),
        low_ok=(low <= pl.min_horizontal(o, c)).all(),
        high_ok=(h >= pl.max_horizontal(o, c)).all(),
        vw_ok=((vw >= low) & (vw <= h)).all(),
    )
    assert checks.row(0) == (True, True, True, True), checks
    assert (bars["v"] > 0).all() and (bars["n"] >= 1).all()
    assert bars["otc"].drop_nulls().all()  # null, or True
    et = bars["et"]
    assert (et.dt.weekday() <= 5).all()  # polars: Monday=1 .. Sunday=7
    minutes = et.dt.hour().cast(pl.Int32) * 60 + et.dt.minute().cast(pl.Int32)
    assert minutes.min() >= 4 * 60 and minutes.max() < 20 * 60


def test_volume_sometimes_fractional_and_otc_rare(market: SyntheticMarket) -> None:
    bars = market.minute_bars("DENSE", et_midnight_ms(D(2023, 1, 1)), et_midnight_ms(D(2024, 1, 1)))
    fractional = (bars["v"] % 1 != 0).sum()
    assert 0 < fractional < bars.height * 0.1
    assert 0 < bars["otc"].sum() < bars.height * 0.01


def test_prices_walk_slowly_and_need_no_history(market: SyntheticMarket) -> None:
    # a distant range is generated directly, with no history before it
    for year in (1995, 2040):
        days = market.day_bars("MID", et_midnight_ms(D(year, 1, 1)), et_midnight_ms(D(year, 3, 1)))
        assert days.height > 30
        closes = days["c"]
        assert (closes.pct_change().drop_nulls().abs() < 0.1).all()
        assert closes.max() / closes.min() < 1.6


def test_listing_bounds_are_inclusive_et_dates(market: SyntheticMarket) -> None:
    bars = et_times(market.minute_bars("NEWCO", *MARCH))
    dates = bars["et"].dt.date()
    assert dates.min() == D(2024, 3, 13) and dates.max() == D(2024, 3, 27)
    days = market.day_bars("NEWCO", *MARCH)
    assert days.height == 11  # the weekdays from Wed 13th to Wed 27th


def test_bars_per_day_is_the_average(market: SyntheticMarket) -> None:
    window = (et_midnight_ms(D(2024, 1, 1)), et_midnight_ms(D(2024, 7, 1)))
    for ticker, expected in (("DENSE", 900), ("MID", 200), ("SPARSE", 50)):
        sessions = market.day_bars(ticker, *window).height
        per_day = market.minute_bars(ticker, *window).height / sessions
        assert abs(per_day - expected) < expected * 0.05, (ticker, per_day)


def test_day_bars_aggregate_the_minute_bars(market: SyntheticMarket) -> None:
    minutes = et_times(market.minute_bars("MID", *MARCH))
    expected = minutes.group_by(pl.col("et").dt.date().alias("date"), maintain_order=True).agg(
        pl.col("o").first(),
        pl.col("h").max(),
        pl.col("l").min(),
        pl.col("c").last(),
        pl.col("v").sum(),
        pl.col("n").sum(),
        vw=(pl.col("vw") * pl.col("v")).sum() / pl.col("v").sum(),
    )
    days = market.day_bars("MID", *MARCH)
    assert days.height == expected.height == 20  # March 2024's 21 weekdays less Good Friday
    for col in ("o", "h", "l", "c", "n"):
        assert days[col].equals(expected[col]), col
    assert ((days["v"] - expected["v"]).abs() < 1e-6).all()
    assert ((days["vw"] - expected["vw"]).abs() <= 5e-5).all()  # rounded to the 1e-4 grid
    assert ((days["vw"] >= days["l"]) & (days["vw"] <= days["h"])).all()
    assert days["otc"].null_count() == days.height
    # t is 00:00 ET of the session date
    want_t = [et_midnight_ms(d) for d in expected["date"]]
    assert days["t"].to_list() == want_t


def test_the_market_trades_on_nyse_sessions_only(market: SyntheticMarket) -> None:
    """As the real market: no bars on a holiday (Good Friday, New Year's Day), nor on a
    special closure (the day of mourning of 2025-01-09); bars the weekdays around them."""
    for closed in (D(2024, 3, 29), D(2024, 1, 1), D(2025, 1, 9)):
        day = (et_midnight_ms(closed), et_midnight_ms(closed + dt.timedelta(days=1)))
        assert market.minute_bars("DENSE", *day).height == 0, closed
        assert market.day_bars("DENSE", *day).height == 0, closed
        after = closed + dt.timedelta(days=3 if closed.weekday() == 4 else 1)
        assert market.minute_bars("DENSE", et_midnight_ms(after), et_midnight_ms(after) + 86_400_000).height


def test_day_bar_t_is_et_midnight_across_dst(market: SyntheticMarket) -> None:
    days = market.day_bars("DENSE", et_midnight_ms(D(2005, 4, 1)), et_midnight_ms(D(2005, 4, 5)))
    # the recorded sample: 2005-04-01 -> 05:00Z (EST), 2005-04-04 -> 04:00Z (EDT)
    assert days["t"].to_list() == [1112331600000, 1112587200000]
    starts = [dt.datetime.fromtimestamp(t / 1000, ET) for t in days["t"]]
    assert all(s.hour == 0 and s.minute == 0 for s in starts)


def test_day_bar_included_iff_its_t_is_in_the_window(market: SyntheticMarket) -> None:
    friday = et_midnight_ms(D(2024, 3, 8))
    assert market.day_bars("DENSE", friday, friday + 1)["t"].to_list() == [friday]
    assert market.day_bars("DENSE", friday + 1, friday + 86_400_000).height == 0
    assert market.day_bars("DENSE", friday - 1, friday).height == 0


def test_a_companys_events_are_listed_under_the_symbols_given_and_a_correction_keeps_its_id() -> None:
    """`listed_under`: the splits and dividends endpoints list an event under the symbols
    named (the real API has listed a split made before a rename under the later symbol);
    the company's later symbol trades on the basis of a split made under an earlier one.
    `corrected_from`: a record fixed in place says the new value under its first id."""
    from polyledger.testing import Dividend, Split

    def renamed(split: Split, dividend: Dividend) -> SyntheticMarket:
        old = Listing(
            "OLD", delist_date=dt.date(2019, 6, 28), bars_per_day=20, company="renco", renamed=True,
            splits=(split,), dividends=(dividend,),
        )  # fmt: skip
        new = Listing("NEW", list_date=dt.date(2019, 7, 1), bars_per_day=20, company="renco")
        return SyntheticMarket([old, new], seed=3)

    day = dt.date(2019, 3, 4)
    under_new = renamed(Split(day, 1, 2, listed_under=("NEW",)), Dividend(day, 0.25, listed_under=("NEW",)))
    for records in (under_new.split_records, under_new.dividend_records):
        assert records("OLD") == [] and [r["ticker"] for r in records("NEW")] == ["NEW"]
        assert [r["ticker"] for r in records()] == ["NEW"]  # market-wide: once
    both = renamed(Split(day, 1, 2, listed_under=("OLD", "NEW")), Dividend(day, 0.25))
    assert [r["ticker"] for r in both.split_records()] == ["NEW", "OLD"]
    assert [r["ticker"] for r in both.dividend_records()] == ["OLD"]  # its listing's own
    # the rename is no jump: NEW's first open is near OLD's last close, both on the split's basis
    bars = {
        t: under_new.day_bars(t, et_midnight_ms(dt.date(2019, 6, 20)), et_midnight_ms(dt.date(2019, 7, 10)))
        for t in ("OLD", "NEW")
    }
    assert abs(bars["NEW"]["o"][0] / bars["OLD"]["c"][-1] - 1) < 0.05

    fixed = renamed(Split(day, 1, 2, corrected_from=(1, 3)), Dividend(day, 0.25, corrected_from=0.52))
    wrong = renamed(Split(day, 1, 3), Dividend(day, 0.52))
    for name, field in (("split_records", "split_to"), ("dividend_records", "cash_amount")):
        (now,), (first,) = getattr(fixed, name)("OLD"), getattr(wrong, name)("OLD")
        assert now["id"] == first["id"] and now[field] != first[field]

"""Adjusted on read (`dl.bars(adjust=...)`): raw bars with the ledger's splits applied equal
the API's own adjusted=true bars, bar for bar; dividends as a total-return factor; as_of;
a download fetched adjusted is refused; unsettled splits/dividends warn."""

from __future__ import annotations

import datetime as dt
import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest
from support import at_stock_sqlite_limit

import polyledger
from polyledger import adjust
from polyledger.adjust import UnsettledAdjustmentWarning
from polyledger.datasets.reference import plan_reference
from polyledger.download import STORED_BAR_SCHEMA
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members

KEY = "adjust-key"
D = dt.date
FIRST, LAST = D(2024, 1, 1), D(2024, 3, 31)
LISTINGS = [
    Listing("SPLT", bars_per_day=40, splits=(Split(D(2024, 2, 12), 1, 4), Split(D(2024, 3, 11), 3, 1))),
    Listing("RVRS", bars_per_day=40, splits=(Split(D(2024, 2, 20), 10, 1),)),
    Listing("FRAC", bars_per_day=40, splits=(Split(D(2024, 3, 4), 2, 3),)),
    # a reused symbol: each company's split is its own
    Listing(
        "REUS",
        delist_date=D(2024, 1, 31),
        bars_per_day=40,
        company="reus-a",
        splits=(Split(D(2024, 1, 16), 2, 1),),
    ),
    Listing(
        "REUS",
        list_date=D(2024, 2, 12),
        bars_per_day=40,
        company="reus-b",
        splits=(Split(D(2024, 3, 18), 1, 2),),
    ),
    # a dividend, then a split: the dividend's previous close is put on its share basis
    Listing(
        "DIVS",
        bars_per_day=40,
        dividends=(Dividend(D(2024, 2, 5), 0.5),),
        splits=(Split(D(2024, 3, 4), 1, 2),),
    ),
    Listing("DIVM", bars_per_day=40, dividends=(Dividend(D(2024, 2, 14), 0.3),)),  # minute bars only
    Listing("PLAIN", bars_per_day=40),
    # a dividend on a split's day: its cash is on the new basis, the previous close on the old
    Listing(
        "DIVX",
        bars_per_day=40,
        splits=(Split(D(2024, 2, 20), 1, 2),),
        dividends=(Dividend(D(2024, 2, 20), 0.2),),
    ),
    # a company renamed to a symbol that sorts first, then split: its files are read
    # NEWA's before OLDN's, out of time order (the API adjusts NEWA's listing alone); NEWA
    # goes ex-dividend on its first session, its previous close is OLDN's
    Listing("OLDN", delist_date=D(2024, 2, 9), bars_per_day=40, company="renco", renamed=True),
    Listing(
        "NEWA",
        list_date=D(2024, 2, 12),
        bars_per_day=40,
        company="renco",
        splits=(Split(D(2024, 3, 4), 1, 2),),
        dividends=(Dividend(D(2024, 2, 12), 0.5),),
    ),
]
UNIVERSE = (
    "ticker,list_date,delisted_utc,security_id\n"
    "SPLT,,,\nRVRS,,,\nFRAC,,,\nREUS,,2024-01-31,REUS-A\nREUS,2024-02-12,,REUS-B\nDIVS,,,\nDIVM,,,\nPLAIN,,,\nDIVX,,,\n"
    "OLDN,,2024-02-09,RENCO\nNEWA,2024-02-12,,RENCO\n"
)
TICKERS = ["SPLT", "RVRS", "FRAC", "REUS", "DIVS", "DIVM", "PLAIN", "DIVX"]
PRICES = ["open", "high", "low", "close", "vwap"]


def _download(folder: Path, api: StandInServer, adjusted: bool) -> Path:
    (folder / "u.csv").write_text(UNIVERSE, encoding="utf-8")
    members = read_members(folder / "u.csv")
    with Ledger(folder / "ledger.db") as ledger:
        plan(ledger, members, "minute", FIRST, LAST)
        plan(ledger, [m for m in members if m.ticker != "DIVM"], "day", FIRST, LAST)
        if not adjusted:
            plan_reference(ledger, [*TICKERS, "OLDN", "NEWA"], "splits", D(2024, 8, 1))
            dividends = [t for t in TICKERS if t != "PLAIN"] + ["OLDN", "NEWA"]
            plan_reference(ledger, dividends, "dividends", D(2024, 8, 1))
        options = RunOptions(workers=2, rate=500, adjusted=adjusted)
        assert (
            Run(ledger, BarStore(folder / "data"), api_key=KEY, base_url=api.url, options=options)
            .execute()
            .ok
        )
    return folder


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=7)


@pytest.fixture(scope="module")
def downloads(market: SyntheticMarket, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same plan fetched raw (with splits and dividends) and adjusted by the API."""
    with StandInServer(market, api_keys=(KEY,)) as api:
        raw = _download(tmp_path_factory.mktemp("raw"), api, adjusted=False)
        adjusted = _download(tmp_path_factory.mktemp("adjusted"), api, adjusted=True)
    return raw, adjusted


def _open(folder: Path) -> polyledger.Download:
    return polyledger.open(folder / "ledger.db", folder / "data")


@pytest.mark.parametrize("dataset", ["minute", "day"])
def test_raw_bars_adjusted_on_read_equal_the_apis_adjusted_bars_bar_for_bar(downloads, dataset):
    raw_folder, api_folder = downloads
    tickers = [t for t in TICKERS if t != "DIVM"] if dataset == "day" else TICKERS
    with _open(raw_folder) as dl, _open(api_folder) as api:
        ours = dl.bars(dataset, tickers=tickers, adjust="splits").collect()
        raw = dl.bars(dataset, tickers=tickers).collect()
        theirs = api.bars(dataset, tickers=tickers).collect()
    assert ours.columns == theirs.columns and ours.height == theirs.height == raw.height > 0
    joined = ours.join(theirs, on=["ticker", "timestamp"], how="full", suffix="_api", coalesce=True).join(
        raw.select("ticker", "timestamp", pl.col("volume").alias("volume_raw")), on=["ticker", "timestamp"]
    )
    assert joined.height == ours.height and joined.null_count().sum_horizontal().item() == 0
    # the API rounds adjusted prices to 1e-4; raw ones are rounded too, then multiplied by
    # the factor f: the two agree within half a tick each, and day bars' vwap within a tick
    factor = pl.col("volume_raw") / pl.col("volume_api")
    for name in PRICES:
        off = joined.filter((pl.col(name) - pl.col(f"{name}_api")).abs() > 1e-4 * (1 + factor) + 1e-9)
        assert off.height == 0, off.select("ticker", "timestamp", name, f"{name}_api").head()
    assert joined.filter((pl.col("volume") / pl.col("volume_api") - 1).abs() > 1e-12).height == 0
    assert (joined["transactions"] == joined["transactions_api"]).all()
    assert (joined["security_id"] == joined["security_id_api"]).all()
    moved = joined.filter((factor - 1).abs() > 1e-9)["ticker"].unique().sort().to_list()
    assert moved == ["DIVS", "DIVX", "FRAC", "REUS", "RVRS", "SPLT"]  # every ticker with splits was adjusted


def _session(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date()


def test_as_of_puts_prices_on_that_days_share_basis(downloads):
    """SPLT splits 1:4 on 02-12 and 3:1 on 03-11. As of 02-20: before 02-12 prices / 4
    (volumes x 4), between the splits raw, from 03-11 on divided by 3 (volumes x 3)."""
    with _open(downloads[0]) as dl:
        raw = dl.bars("day", tickers="SPLT").collect()
        between = dl.bars("day", tickers="SPLT", adjust="splits", as_of="2024-02-20").collect()
        before_all = dl.bars("day", tickers="SPLT", adjust="splits", as_of=D(2024, 1, 5)).collect()
        latest = dl.bars("day", tickers="SPLT", adjust="splits").collect()
        after_all = dl.bars("day", tickers="SPLT", adjust="splits", as_of="2024-12-31").collect()
    session = raw.select(_session(raw)).to_series()
    expected = {
        "between": pl.when(session < D(2024, 2, 12))
        .then(0.25)
        .when(session < D(2024, 3, 11))
        .then(1.0)
        .otherwise(1 / 3),
        "before_all": pl.when(session < D(2024, 2, 12))
        .then(1.0)
        .when(session < D(2024, 3, 11))
        .then(4.0)
        .otherwise(4 / 3),
        "latest": pl.when(session < D(2024, 2, 12))
        .then(0.75)
        .when(session < D(2024, 3, 11))
        .then(3.0)
        .otherwise(1.0),
    }
    for name, frame in {"between": between, "before_all": before_all, "latest": latest}.items():
        ratio = pl.DataFrame({"got": frame["close"] / raw["close"], "vol": raw["volume"] / frame["volume"]})
        want = raw.select(expected[name]).to_series()
        assert ((ratio["got"] - want).abs() < 1e-12).all(), name
        assert ((ratio["vol"] - want).abs() < 1e-12).all(), name  # volumes move the other way
    assert after_all.equals(latest)


def test_dividends_are_a_total_return_factor_on_the_previous_close(downloads, market):
    """DIVS: 0.50 ex 02-05 (previous close from day bars), then a 1:2 split; DIVM: 0.30 ex
    02-14, minute bars only (previous close from the last minute bar); DIVX: 0.20 ex 02-20,
    the day of a 1:2 split (the previous close put on the new basis). Bars before each
    ex-date are multiplied by 1 - cash / previous close, as the API's
    historical_adjustment_factor says; bars from the ex-date on are not."""
    with _open(downloads[0]) as dl:
        cases = (("DIVS", "day", D(2024, 2, 5), 1.0), ("DIVM", "minute", D(2024, 2, 14), 1.0))
        # DIVX: the 1:2 split of the ex-date halves the previous close onto the cash's basis
        for ticker, dataset, ex, basis in (*cases, ("DIVX", "day", D(2024, 2, 20), 0.5)):
            raw = dl.bars(dataset, tickers=ticker).collect()
            splits_only = dl.bars(dataset, tickers=ticker, adjust="splits").collect()
            total = dl.bars(dataset, tickers=ticker, adjust="splits+dividends").collect()
            session = raw.select(_session(raw)).to_series()
            previous = raw.filter(session < ex)["close"][-1]  # raw, on its own share basis
            cash = next(
                d.cash_amount for listing in LISTINGS if listing.ticker == ticker for d in listing.dividends
            )
            factor = 1 - cash / (previous * basis)
            api_factor = next(r for r in market.dividend_records(ticker))["historical_adjustment_factor"]
            assert abs(factor - api_factor) < 1e-6
            ratio = (total["close"] / splits_only["close"]).to_list()
            for day, got in zip(session.to_list(), ratio, strict=True):
                assert abs(got - (factor if day < ex else 1.0)) < 1e-12, (ticker, day)
            assert total["volume"].equals(splits_only["volume"])  # dividends leave volumes alone


def test_bars_fetched_adjusted_are_refused_on_one_line(downloads):
    with _open(downloads[1]) as api:
        with pytest.raises(InputError, match="fetched adjusted") as refused:
            api.bars("minute", tickers=["SPLT"], adjust="splits")
        assert api.bars("minute", tickers=["SPLT"]).collect().height > 0  # read as fetched
    assert "\n" not in str(refused.value)


def test_unsettled_splits_or_dividends_warn_and_bad_choices_are_errors(downloads):
    with _open(downloads[0]) as dl:
        with pytest.warns(
            UnsettledAdjustmentWarning, match=r"dividends of 1 ticker are not settled.*PLAIN \(not planned\)"
        ):
            dl.bars("day", tickers=["PLAIN"], adjust="splits+dividends")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # splits of PLAIN are settled (none): no warning
            dl.bars("day", tickers=["PLAIN"], adjust="splits")
        with pytest.raises(InputError, match="unknown adjust 'dividends'"):
            dl.bars("day", adjust="dividends")
        with pytest.raises(InputError, match="adjust applies to minute and day bars, not grouped_daily"):
            dl.bars("grouped_daily", adjust="splits")
        with pytest.raises(InputError, match="invalid as_of"):
            dl.bars("day", adjust="splits", as_of="2024-13-01")


def test_a_split_after_a_rename_adjusts_the_companys_earlier_symbol_too(downloads):
    """RENCO traded as OLDN, then as NEWA, which split 1:2 on 03-04: per security, OLDN's
    bars are halved as well. Read by ticker (NEWA's files first, out of time order) or by
    security (in time order), the same bars."""
    with _open(downloads[0]) as dl:
        raw = dl.bars("day", tickers=["NEWA", "OLDN"]).collect()
        by_ticker = dl.bars("day", tickers=["NEWA", "OLDN"], adjust="splits").collect()
        by_security = dl.bars("day", security="RENCO", adjust="splits").collect()
    assert by_ticker["ticker"].to_list() == raw["ticker"].to_list()  # the order as read is kept
    assert raw["ticker"][0] == "NEWA" and set(raw["ticker"]) == {"NEWA", "OLDN"}
    session = raw.select(_session(raw)).to_series()
    want = raw.select(pl.when(session < D(2024, 3, 4)).then(0.5).otherwise(1.0)).to_series()
    assert ((by_ticker["close"] / raw["close"] - want).abs() < 1e-12).all()
    assert by_ticker.sort("timestamp").equals(by_security)


@pytest.mark.parametrize("dataset", ["minute", "day"])
def test_a_dividend_on_the_first_session_after_a_rename_uses_the_old_symbols_close(downloads, dataset):
    """NEWA goes ex 0.50 on 02-12, its first session: the previous close is RENCO's last
    one, OLDN's on 02-09. The dividend is applied (no warning), to OLDN's bars too."""
    with _open(downloads[0]) as dl:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a dividend left out warns
            total = dl.bars(dataset, security="RENCO", adjust="splits+dividends").collect()
        splits_only = dl.bars(dataset, security="RENCO", adjust="splits").collect()
        day = dl.bars("day", tickers=["OLDN"]).collect()
    previous = day.filter(_session(day) == D(2024, 2, 9))["close"].item()
    session = total.select(_session(total)).to_series()
    assert set(total.filter(session < D(2024, 2, 12))["ticker"]) == {"OLDN"}
    want = total.select(pl.when(session < D(2024, 2, 12)).then(1 - 0.5 / previous).otherwise(1.0)).to_series()
    assert ((total["close"] / splits_only["close"] - want).abs() < 1e-12).all()


def test_a_dividend_stored_twice_is_applied_once(downloads, tmp_path):
    """A dividends file fetched before they were de-duplicated on write may hold one
    twice (the API listed it twice): it is applied once."""
    folder = tmp_path / "twice"
    shutil.copytree(downloads[0], folder)
    path = folder / "data" / "dividends" / "ticker=DIVS" / "part.parquet"
    stored = pl.read_parquet(path)
    pl.concat([stored, stored]).write_parquet(path)
    with _open(downloads[0]) as dl, _open(folder) as twice:
        assert twice.reference("dividends", tickers=["DIVS"]).collect().height == 2 * stored.height == 2
        once = dl.bars("day", tickers="DIVS", adjust="splits+dividends").collect()
        again = twice.bars("day", tickers="DIVS", adjust="splits+dividends").collect()
        splits_only = dl.bars("day", tickers="DIVS", adjust="splits").collect()
    assert not once.equals(splits_only)  # the dividend is applied
    assert again.equals(once)


def test_an_adjusted_read_of_more_tickers_than_sqlite_binds_at_once_asks_of_each(tmp_path):
    """An adjusted read of the market's day bars (40,000 tickers) asked the ledger whether
    they were fetched adjusted, how their splits' units stand and what their splits are,
    each in one IN list: past a stock SQLite's 32766 bound variables the read stopped
    ('too many SQL variables'). Asked in slices: not refused, the unsettled splits of every
    ticker but T00001 said, T00001's split found."""
    path = tmp_path / "ledger.db"
    tickers = [f"T{i:05d}" for i in range(40_000)]
    with Ledger(path) as ledger:
        ledger.add_units(PlannedUnit("day", t, D(2024, 1, 1), D(2024, 12, 31)) for t in tickers)
        ledger.add_units([PlannedUnit("splits", "T00001", D(2003, 1, 1), D(2024, 12, 31), "all")])
        (unit,) = ledger.claim("w", 60, datasets=["splits"])
        ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(), None)], None)
        ledger.replace_splits("T00001", [("2024-03-01", 1.0, 2.0)])
    with polyledger.open(path, tmp_path / "data") as dl:
        at_stock_sqlite_limit(dl.ledger)
        adjust.refuse_adjusted(dl, "day", tickers)  # none fetched adjusted
        with pytest.warns(
            UnsettledAdjustmentWarning,
            match=r"splits of 39,999 tickers are not settled.*: T00000 \(not planned\), T00002",
        ):
            adjust.adjusted(dl, pl.LazyFrame(schema=STORED_BAR_SCHEMA), tickers, "splits", None)
        assert adjust._split_rows(dl, tickers) == [("T00001", D(2024, 3, 1), 1.0, 2.0)]

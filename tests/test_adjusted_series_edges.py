"""Edges of the adjusted series (`dl.bars(adjust=...)`, polyledger/adjust.py) found by a
review (branch review-adjust, e0d0595): each test failed on the code of its day for the
reason its docstring gives.

- the default share basis is today's: a split or a dividend dated after today changes
  no price yet;
- bars later than the last time the ledger learned a ticker's splits (or dividends) are
  not returned as an adjusted series without a word: they may sit on two share bases;
- one dividend the API lists twice under two ids is applied once;
- a split or a dividend made under a company's earlier symbol and listed under its later
  one applies to the earlier symbol's bars (a later review's suspicion, confirmed);
- a reverse split (and a dividend) on the day of a rename, listed under the symbol left
  and dated on the new symbol's first session, applies to the old symbol's bars.

Deterministic: a stand-in API on 127.0.0.1, fixed dates (or dates counted from today's
where the promise is about today), the ledger's times set by SQL, no sleeps."""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings
from pathlib import Path

import polars as pl
import pytest
from support import fetch_raw

import polyledger
from polyledger.adjust import UnsettledAdjustmentWarning
from polyledger.datasets.reference import plan_reference
from polyledger.ledger import Ledger
from polyledger.periods import et_today
from polyledger.plan import plan
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members

D = dt.date
KEY = "adjusted-series-edges-key"


def _session(frame: pl.DataFrame) -> pl.Series:
    return frame.select(pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date()).to_series()


def _fetch(folder: Path, server: StandInServer, datasets: tuple[str, ...]) -> None:
    fetch_raw(folder, server.url, KEY, datasets)


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


# --- bars later than the splits (dividends) the ledger knows: said, not silent -------------


def _stale_download(folder: Path, dataset: str, later: SyntheticMarket, earlier: SyntheticMarket) -> None:
    """CHAR's `dataset` unit fetched from `earlier` (on 2024-01-15 by the ledger's clock),
    its raw day bars of 2024-01-01..02-29 from `later` (on 2024-03-01)."""
    (folder / "u.csv").write_text("ticker\nCHAR\n", encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["CHAR"], "splits", D(2024, 8, 1))
        if dataset == "dividends":
            plan_reference(ledger, ["CHAR"], "dividends", D(2024, 8, 1))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2024, 1, 1), D(2024, 2, 29))
    with StandInServer(earlier, api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends") if dataset == "dividends" else ("splits",))
        server.market = later  # the event is announced and goes through; the bars come after
        _fetch(folder, server, ("day",))
    with sqlite3.connect(folder / "ledger.db") as con:  # when each was fetched, on the ledger's clock
        con.execute(
            "UPDATE units SET fetched_at = '2024-01-15T03:30:00.000Z' WHERE dataset IN ('splits', 'dividends')"
        )
        con.execute("UPDATE units SET fetched_at = '2024-03-01T03:30:00.000Z' WHERE dataset = 'day'")


def _stale_said(caught: list[warnings.WarningMessage], dataset: str) -> list[str]:
    """What the read said of `dataset` known for less than the bars (not of units unsettled)."""
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, UnsettledAdjustmentWarning)
        and str(w.message).startswith(f"{dataset} of ")
        and "not settled" not in str(w.message)
    ]


def test_adjusted_bars_newer_than_the_splits_the_ledger_knows_are_not_returned_silently(tmp_path):
    """CHAR's splits unit was fetched on 2024-01-15 (no split then). Its raw day bars were
    fetched later, through 2024-02-29; the API meanwhile recorded a 1:2 split executed on
    2024-02-12, so the raw bars halve there. Nothing fetches a splits unit again but
    `sync`'s refresh (a plain `run` never does), and the ledger knows the splits unit
    predates every bar from 2024-01-16 on. Yet `adjust="splits"` returned the bars with no
    warning at all: an "adjusted" series with a 50% drop that is no price move. The read
    says the splits may be stale, naming the ticker and both dates; it is not refused.
    What the ledger does know keeps quiet: bars read up to the fetch, a `sync` check
    (sync.checked.splits) after the bars, a splits unit fetched after them."""
    before = SyntheticMarket([Listing("CHAR", bars_per_day=20)], seed=3)
    after = SyntheticMarket([Listing("CHAR", bars_per_day=20, splits=(Split(D(2024, 2, 12), 1, 2),))], seed=3)
    _stale_download(tmp_path, "splits", after, before)
    with _open(tmp_path) as dl:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adjusted = dl.bars("day", tickers=["CHAR"], adjust="splits").collect()
    session = _session(adjusted)
    jump = (
        adjusted.filter(session == D(2024, 2, 12))["open"].item()
        / adjusted.filter(session == D(2024, 2, 9))["close"].item()
    )
    said = _stale_said(caught, "splits")
    assert said, (
        f"adjusted CHAR moves x{jump:.2f} overnight on 2024-02-12 (a 1:2 split the ledger never "
        "fetched), and the read said nothing although CHAR's splits were last fetched 2024-01-15, "
        f"before its bars through 2024-02-29; warnings: {[str(w.message) for w in caught]}"
    )
    assert len(said) == 1 and "CHAR" in said[0], said
    assert "2024-01-14" in said[0] and "2024-02-29" in said[0], said[0]  # known to, bars to
    assert adjusted.height == session.n_unique() > 0  # read all the same
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")  # bars up to what the splits unit knows: nothing to say
        dl.bars("day", tickers=["CHAR"], adjust="splits", end="2024-01-12").collect()
    with Ledger(tmp_path / "ledger.db") as ledger:  # a sync's check that queued nothing
        ledger.set_setting("sync.checked.splits", "2024-03-01")
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")
        dl.bars("day", tickers=["CHAR"], adjust="splits").collect()
    with sqlite3.connect(tmp_path / "ledger.db") as con:
        con.execute("DELETE FROM settings WHERE key = 'sync.checked.splits'")
        con.execute("UPDATE units SET fetched_at = '2024-02-29T21:30:00.000Z' WHERE dataset = 'splits'")
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")  # fetched after 2024-02-29's open: knows its splits
        dl.bars("day", tickers=["CHAR"], adjust="splits").collect()


def test_adjusted_bars_newer_than_the_dividends_the_ledger_knows_are_not_returned_silently(tmp_path):
    """As splits: CHAR's dividends unit was fetched on 2024-01-15, its day bars through
    2024-02-29; a dividend going ex on 2024-02-05 since is not in the ledger, and the
    total-return series read as if there were none. Said, naming the ticker and dates."""
    before = SyntheticMarket([Listing("CHAR", bars_per_day=20)], seed=3)
    after = SyntheticMarket(
        [Listing("CHAR", bars_per_day=20, dividends=(Dividend(D(2024, 2, 5), 0.5),))], seed=3
    )
    _stale_download(tmp_path, "dividends", after, before)
    with _open(tmp_path) as dl:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total = dl.bars("day", tickers=["CHAR"], adjust="splits+dividends").collect()
    said = _stale_said(caught, "dividends")
    assert len(said) == 1 and "CHAR" in said[0], [str(w.message) for w in caught]
    assert "2024-01-14" in said[0] and "2024-02-29" in said[0], said[0]
    assert len(_stale_said(caught, "splits")) == 1  # its splits unit is as old
    assert total.height > 0


# --- one dividend listed twice under two ids: applied once -------------------------------


def test_a_recurring_dividend_listed_twice_under_two_ids_is_applied_once(tmp_path):
    """The API has listed one dividend twice (polygon-io/issues#162: "Duplicate dividends on
    the same day"); the splits dataset guards against the same (SHOP's split listed twice).
    Two records identical in every field (ex, declaration, record and pay dates, cash,
    currency, quarterly frequency, type) but their ids are one dividend, not a regular
    plus a special one: `unique_dividends` de-duplicated by id only, and
    `dividend_events` summed the two, so every price before the ex-date got 1 - 2D/P."""
    folder = tmp_path
    market = SyntheticMarket(
        [Listing("DIVS", bars_per_day=20, dividends=(Dividend(D(2024, 2, 5), 0.5),))], seed=3
    )
    (folder / "u.csv").write_text("ticker\nDIVS\n", encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["DIVS"], "splits", D(2024, 8, 1))
        plan_reference(ledger, ["DIVS"], "dividends", D(2024, 8, 1))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2024, 1, 1), D(2024, 2, 29))
    with StandInServer(market, api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends", "day"))
    path = folder / "data" / "dividends" / "ticker=DIVS" / "part.parquet"
    stored = pl.read_parquet(path)
    assert stored.height == 1
    # what the fetch stores when the API lists it twice (it keeps records with distinct ids)
    pl.concat([stored, stored.with_columns(pl.lit("E-the-same-dividend-again").alias("id"))]).write_parquet(
        path
    )
    with _open(folder) as dl:
        total = dl.bars("day", tickers="DIVS", adjust="splits+dividends").collect()
        splits_only = dl.bars("day", tickers="DIVS", adjust="splits").collect()
    got = total["close"][0] / splits_only["close"][0]
    api_factor = market.dividend_records("DIVS")[0]["historical_adjustment_factor"]
    assert abs(got - api_factor) < 1e-6, (
        f"factor before the ex-date {got:.6f}, the API's {api_factor:.6f}: the one 0.50 dividend "
        "was applied twice"
    )


# --- a split or a dividend listed under the company's later symbol ---------------------------

SPLIT_ON, EX_ON = D(2019, 3, 4), D(2019, 5, 6)  # both while the company traded as OLD
RENCO_UNIVERSE = "ticker,list_date,delisted_utc,security_id\nOLD,,2019-06-28,RENCO\nNEW,2019-07-01,,RENCO\n"


def _renamed_company(folder: Path, listed_under: tuple[str, ...]) -> None:
    """RENCO traded as OLD until 2019-06-28 and as NEW from 2019-07-01. As OLD it split 1:2
    (2019-03-04) and went ex a 0.25 dividend (2019-05-06), both listed by the API under
    `listed_under`. Its raw day bars of 2019, splits and dividends, fetched."""
    events = {"listed_under": listed_under}
    old = Listing(
        "OLD",
        delist_date=D(2019, 6, 28),
        bars_per_day=20,
        company="renco",
        renamed=True,
        splits=(Split(SPLIT_ON, 1, 2, **events),),
        dividends=(Dividend(EX_ON, 0.25, **events),),
    )
    new = Listing("NEW", list_date=D(2019, 7, 1), bars_per_day=20, company="renco")
    (folder / "u.csv").write_text(RENCO_UNIVERSE, encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["OLD", "NEW"], "splits", D(2020, 1, 2))
        plan_reference(ledger, ["OLD", "NEW"], "dividends", D(2020, 1, 2))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2019, 1, 1), D(2019, 12, 31))
    with StandInServer(SyntheticMarket([old, new], seed=3), api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends", "day"))


@pytest.mark.parametrize("listed_under", [("OLD",), ("NEW",), ("OLD", "NEW")], ids="+".join)
def test_a_split_and_a_dividend_listed_under_the_companys_later_symbol_still_apply(tmp_path, listed_under):
    """The API lists a company's corporate actions by symbol, and has listed a split made
    under an earlier symbol under the one the company trades as now (polygon-io/issues#253:
    DRAD's 2019 split listed under STRR, its symbol from 2021; polygon-api.md does not say
    which). An event of NEW dated before NEW's first session falls inside no listing of NEW:
    `split_events` and `dividend_events` dropped it as "no known company", and RENCO's
    adjusted series kept OLD's split (a 50% drop that is no price move) and left the
    dividend out, without a word. Wherever the API lists them -- under OLD, under NEW, or
    under both (one event, applied once) -- they apply to the company's bars."""
    _renamed_company(tmp_path, listed_under)
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unsettled, nothing left out
        raw = dl.bars("day", security="RENCO").collect()
        splits_only = dl.bars("day", security="RENCO", adjust="splits").collect()
        total = dl.bars("day", security="RENCO", adjust="splits+dividends").collect()
    session = _session(raw)
    assert set(raw["ticker"]) == {"OLD", "NEW"} and session.min() < SPLIT_ON
    split_factor = splits_only["close"] / raw["close"]
    want = pl.Series([0.5 if day < SPLIT_ON else 1.0 for day in session])
    assert ((split_factor - want).abs() < 1e-12).all(), (
        f"listed under {listed_under}: adjusted / raw closes before the 1:2 split are "
        f"{sorted(set(split_factor.filter(session < SPLIT_ON).round(6)))}, want 0.5"
    )
    previous = raw.filter(session < EX_ON)["close"][-1]  # OLD's, on the ex-date's basis
    dividend_factor = total["close"] / splits_only["close"]
    want = pl.Series([1 - 0.25 / previous if day < EX_ON else 1.0 for day in session])
    assert ((dividend_factor - want).abs() < 1e-12).all(), (
        f"listed under {listed_under}: factor before the ex-date "
        f"{sorted(set(dividend_factor.filter(session < EX_ON).round(6)))}, want {1 - 0.25 / previous:.6f}"
    )


def _relisted_under_new(folder: Path, change: dict[str, pl.Expr]) -> None:
    """NEW's record of RENCO's dividend rewritten with `change` (its optional fields as
    the provider's other record of the same cash event may give them)."""
    path = folder / "data" / "dividends" / "ticker=NEW" / "part.parquet"
    stored = pl.read_parquet(path)
    assert stored.height == 1 and stored["ex_dividend_date"][0] == EX_ON
    stored.with_columns(**change).write_parquet(path)


@pytest.mark.parametrize(
    "change",
    [
        {"pay_date": pl.col("pay_date") + dt.timedelta(days=1)},
        {"declaration_date": pl.lit(None, pl.Date()), "record_date": pl.lit(None, pl.Date())},
        {"frequency": pl.lit(None, pl.Int64()), "distribution_type": pl.lit(None, pl.String())},
    ],
    ids=["pay-date-differs", "dates-missing", "kind-missing"],
)
def test_a_dividend_listed_under_both_symbols_with_different_optional_fields_is_applied_once(
    tmp_path, change
):
    """RENCO's 0.25 dividend (ex 2019-05-06, as OLD) is listed under OLD and under NEW,
    the two records agreeing in ex-date and cash but not in the fields the provider fills
    in or corrects per record (pay or declaration date, frequency). `_cash_per_ex_date`
    took records equal in all but the ticker as one, anything else as two: the one cash
    event was summed twice, every earlier price times 1 - 0.5 / P."""
    _renamed_company(tmp_path, ("OLD", "NEW"))
    _relisted_under_new(tmp_path, change)
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")
        splits_only = dl.bars("day", security="RENCO", adjust="splits").collect()
        total = dl.bars("day", security="RENCO", adjust="splits+dividends").collect()
        raw = dl.bars("day", security="RENCO").collect()
    session = _session(raw)
    previous = raw.filter(session < EX_ON)["close"][-1]
    got = sorted(set((total["close"] / splits_only["close"]).filter(session < EX_ON).round(9)))
    assert got == [round(1 - 0.25 / previous, 9)], (
        f"factor before the ex-date {got}, want 1 - 0.25 / {previous}"
    )


# --- a split listed under both symbols on dates a few days apart ----------------------------


def _split_dated(folder: Path, ticker: str, day: dt.date) -> None:
    """`ticker`'s record of RENCO's 1:2 split dated `day` in the ledger's table (what
    adjusting reads), as if the provider's record under that symbol said so."""
    with sqlite3.connect(folder / "ledger.db") as con:
        moved = con.execute(
            "UPDATE splits SET execution_date = ? WHERE ticker = ?", (day.isoformat(), ticker)
        ).rowcount
    assert moved == 1


def _split_factors(folder: Path) -> tuple[pl.Series, pl.Series, list[str]]:
    """RENCO's sessions, its adjusted / raw closes (adjust="splits"), and what the read said."""
    with _open(folder) as dl:
        raw = dl.bars("day", security="RENCO").collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            splits_only = dl.bars("day", security="RENCO", adjust="splits").collect()
    said = [str(w.message) for w in caught if issubclass(w.category, UnsettledAdjustmentWarning)]
    return _session(raw), splits_only["close"] / raw["close"], said


@pytest.mark.parametrize("new_dated", [D(2019, 3, 7), D(2019, 2, 26)], ids=["after", "before"])
def test_a_split_listed_under_both_symbols_on_dates_days_apart_is_applied_once_and_said(tmp_path, new_dated):
    """RENCO's 1:2 split (2019-03-04, as OLD) is listed under OLD on its date and under NEW
    a few days off (the provider's two records disagree). `split_events` kept one split per
    (security, date, ratio): two dates, two splits, every price before both quartered. The
    same ratio under two symbols of one security within 31 days is one split (as for one
    symbol's records, `splits.SAME_SPLIT_WITHIN`); the record under the symbol the security
    traded under on its date wins (OLD's: NEW first traded in July), and the read says so,
    naming both records."""
    _renamed_company(tmp_path, ("OLD", "NEW"))
    _split_dated(tmp_path, "NEW", new_dated)
    session, factor, said = _split_factors(tmp_path)
    want = pl.Series([0.5 if day < SPLIT_ON else 1.0 for day in session])
    assert ((factor - want).abs() < 1e-12).all(), (
        f"adjusted / raw closes {sorted(set(factor.round(6)))}: the one 1:2 split applied on both dates"
    )
    assert len(said) == 1, said
    assert f"OLD {SPLIT_ON}" in said[0] and f"NEW {new_dated}" in said[0], said[0]
    assert f"applied once, on {SPLIT_ON}" in said[0], said[0]


def test_a_split_listed_under_both_symbols_each_dated_while_its_symbol_traded_takes_the_later_symbols(
    tmp_path,
):
    """The two records of one 1:2 split dated either side of the rename, each while its
    symbol traded (OLD's 2019-06-27, NEW's 2019-07-02): trading does not tell them apart,
    and the record under the symbol the company took last wins (the provider lists and
    corrects a company's events under its current symbol). Applied once, and said."""
    _renamed_company(tmp_path, ("OLD", "NEW"))
    _split_dated(tmp_path, "OLD", D(2019, 6, 27))
    _split_dated(tmp_path, "NEW", D(2019, 7, 2))
    session, factor, said = _split_factors(tmp_path)
    want = pl.Series([0.5 if day < D(2019, 7, 2) else 1.0 for day in session])
    assert ((factor - want).abs() < 1e-12).all(), sorted(set(factor.round(6)))
    assert len(said) == 1 and "OLD 2019-06-27, NEW 2019-07-02" in said[0], said
    assert "applied once, on 2019-07-02" in said[0], said[0]


# --- a reverse split on the day of a rename, listed under one symbol only -------------------

LAST_AS_XYZ, FIRST_AS_XYZD = D(2019, 7, 12), D(2019, 7, 15)  # a Friday, the next Monday
SMALLCO_UNIVERSE = (
    "ticker,list_date,delisted_utc,security_id\nXYZ,,2019-07-12,SMALLCO\nXYZD,2019-07-15,,SMALLCO\n"
)
DIVIDEND_CASH = 0.05  # on the split's share basis


def _reverse_split_with_a_rename(folder: Path, dated: dt.date, listed_under: str) -> SyntheticMarket:
    """SMALLCO traded as XYZ until 2019-07-12 and as XYZD from 2019-07-15. A 1-for-10
    reverse split and a 0.05 dividend, both dated `dated`, are listed under `listed_under`
    only. Its raw day bars of 2019, splits and dividends, fetched; the stand-in returned."""
    events = {"listed_under": (listed_under,)}
    xyz = Listing(
        "XYZ",
        delist_date=LAST_AS_XYZ,
        bars_per_day=20,
        company="smallco",
        renamed=True,
        splits=(Split(dated, 10, 1, **events),),
        dividends=(Dividend(dated, DIVIDEND_CASH, **events),),
    )
    xyzd = Listing("XYZD", list_date=FIRST_AS_XYZD, bars_per_day=20, company="smallco")
    market = SyntheticMarket([xyz, xyzd], seed=3)
    (folder / "u.csv").write_text(SMALLCO_UNIVERSE, encoding="utf-8")
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["XYZ", "XYZD"], "splits", D(2020, 1, 2))
        plan_reference(ledger, ["XYZ", "XYZD"], "dividends", D(2020, 1, 2))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2019, 1, 1), D(2019, 12, 31))
    with StandInServer(market, api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends", "day"))
    return market


def _standin_adjusted_closes(market: SyntheticMarket, ticker: str) -> pl.DataFrame:
    """The stand-in's own `adjusted=true` day closes of `ticker` in 2019 (timestamp, close)."""
    from polyledger.testing.market import et_midnight_ms

    bars = market.day_bars(
        ticker, et_midnight_ms(D(2019, 1, 1)), et_midnight_ms(D(2020, 1, 1)), adjusted=True
    )
    return bars.select(
        pl.from_epoch("t", time_unit="ms")
        .cast(pl.Datetime("ms"))
        .dt.replace_time_zone("UTC")
        .alias("timestamp"),
        pl.col("c"),
    )


@pytest.mark.parametrize(
    ("dated", "listed_under"),
    [(FIRST_AS_XYZD, "XYZ"), (LAST_AS_XYZ, "XYZD")],
    ids=["under-old-on-new-first-session", "under-new-on-old-last-session"],
)
@pytest.mark.parametrize(
    "read", [{"security": "SMALLCO"}, {"tickers": ["XYZ"]}], ids=["security", "old-symbol"]
)
def test_a_reverse_split_on_the_day_of_a_rename_listed_under_one_symbol_adjusts_the_old_symbols_bars(
    tmp_path, dated, listed_under, read
):
    """Small caps often reverse-split and change symbol on one day. The provider may list
    the split (or a dividend) under the symbol left, XYZ, dated on the new symbol's first
    session, when XYZ's listing had ended the session before: `EventOwners.security_on`
    found no listing of XYZ holding the date and no company that took XYZ after it, and
    the split was no company's, dropped without a word (XYZ's adjusted prices 10x off, the
    dividend left out). It belongs to the company that left XYZ the session before and
    trades as XYZD on the date. Listed under XYZD, dated on XYZ's last session, it was
    the company's already (a symbol taken after the date). Either way XYZ's bars before
    the date are adjusted by it, as the stand-in's own adjusted=true bars of XYZ are."""
    market = _reverse_split_with_a_rename(tmp_path, dated, listed_under)
    with _open(tmp_path) as dl, warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unsettled, nothing left out
        raw = dl.bars("day", **read).collect()  # type: ignore[arg-type]
        splits_only = dl.bars("day", adjust="splits", **read).collect()  # type: ignore[arg-type]
        total = dl.bars("day", adjust="splits+dividends", **read).collect()  # type: ignore[arg-type]
    session = _session(raw)
    assert session.min() < dated and raw["ticker"].unique().sort().to_list() == sorted(
        {"XYZ", "XYZD"} & set(read.get("tickers", ["XYZ", "XYZD"]))
    )
    split_factor = splits_only["close"] / raw["close"]
    want = pl.Series([10.0 if day < dated else 1.0 for day in session])
    assert ((split_factor - want).abs() < 1e-9).all(), (
        f"listed under {listed_under} on {dated}: adjusted / raw closes before the 1-for-10 reverse "
        f"split are {sorted(set(split_factor.filter(session < dated).round(6)))}, want 10"
    )
    # the stand-in's adjusted=true bars of XYZ agree (its prices rounded to 1e-4, ours x10)
    theirs = _standin_adjusted_closes(market, "XYZ")
    ours = splits_only.filter(pl.col("ticker") == "XYZ").join(theirs, on="timestamp", how="full")
    assert ours.height == theirs.height > 100 and ours["close"].null_count() == 0
    assert ((ours["close"] - ours["c"]).abs() <= 1e-4 * 11 + 1e-9).all(), "XYZ's closes off the stand-in's"
    # the dividend: its previous close is XYZ's of the session before, on the split's basis (x10)
    previous = raw.filter(session < dated)["close"][-1] * 10.0
    dividend_factor = (total["close"] / splits_only["close"]).filter(session < dated)
    assert ((dividend_factor - (1 - DIVIDEND_CASH / previous)).abs() < 1e-12).all(), (
        f"factor before the ex-date {sorted(set(dividend_factor.round(6)))}, "
        f"want {1 - DIVIDEND_CASH / previous:.6f}"
    )
    api_factor = market.dividend_records(listed_under)[0]["historical_adjustment_factor"]
    assert abs(dividend_factor[0] - api_factor) < 1e-6, (dividend_factor[0], api_factor)


def test_a_regular_and_a_special_dividend_of_the_same_amount_listed_one_under_each_symbol_are_both_paid():
    """RENCO (OLD until 2019-06-28, NEW after) pays a regular 0.25 and a special 0.25, both
    ex 2019-05-06; OLD's record holds the regular one, NEW's the special one. Records under
    two symbols that say different kinds (distribution_type CD vs SC, frequency 4 vs 0)
    are two cash events; keyed on the amount alone they were one, the special dividend
    dropped silently (a review, 2026-12-02). Two kinds given and differing: two events."""
    from polyledger.adjust import _cash_per_ex_date
    from polyledger.listings import Listing as Window

    listings = [Window("OLD", None, D(2019, 6, 28), "RENCO"), Window("NEW", D(2019, 7, 1), None, "RENCO")]
    ex = D(2019, 5, 6)
    dividends = pl.DataFrame(
        {
            "ticker": ["OLD", "NEW"],
            "ex_dividend_date": [ex, ex],
            "declaration_date": [D(2019, 4, 1), D(2019, 4, 20)],
            "record_date": [D(2019, 5, 7), D(2019, 5, 7)],
            "pay_date": [D(2019, 5, 20), D(2019, 5, 20)],
            "cash_amount": [0.25, 0.25],
            "currency": ["USD", "USD"],
            "frequency": [4, 0],
            "distribution_type": ["CD", "SC"],
        }
    )
    owned, skipped = _cash_per_ex_date(dividends, listings)
    assert skipped == []
    assert [(security, day, cash) for security, _, day, cash in owned] == [("RENCO", ex, 0.5)], owned

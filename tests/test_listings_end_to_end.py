"""Right company, right bars: universe -> plan -> run -> audit over a stand-in market as
messy as the real one (`polyledger.testing.messy_listings`): a symbol reused by an
unrelated company with bars of nobody in between, a renamed company, a delisted name
without FIGI, `ABCpA` next to `ABCPA`, and a plan whose history starts mid-range with
straddling answers clipped silently."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, STORED_COLUMNS, as_stored, run_cli

import polyledger
from polyledger.periods import ET
from polyledger.testing import StandInServer, SyntheticMarket, messy_listings
from polyledger.testing.market import et_midnight_ms
from polyledger.testing.messy import RENAME_EVENT_DAY

D = dt.date
START, END = D(2019, 1, 1), D(2023, 12, 31)
HISTORY_START = D(2019, 7, 1)  # the plan's entitlement: earlier ranges 403, straddling ones clipped
ECHO_A_LAST, GAP, ECHO_B_FIRST = D(2019, 9, 18), (D(2019, 9, 23), D(2019, 9, 27)), D(2021, 3, 1)
RENAME = D(2022, 6, 9)
FIXTURES = Path(__file__).parent / "fixtures"


def served(market: SyntheticMarket, ticker: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Every bar the stand-in serves under `ticker` for the ET dates [first, last], whoever
    traded it, in the stored columns."""
    bars = market.bars("minute", ticker, et_midnight_ms(first), et_midnight_ms(last + dt.timedelta(days=1)))
    return as_stored(bars, ticker)


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticMarket, dict]:
    work = tmp_path_factory.mktemp("messy")
    market = SyntheticMarket(messy_listings(), seed=5)
    server = StandInServer(market, api_keys=(API_KEY,), history_start=HISTORY_START, straddle="clip")
    with pytest.MonkeyPatch.context() as env, server:
        env.chdir(work)
        env.setenv("POLYGON_API_KEY", API_KEY)
        built = run_cli("universe", "--out", "u.csv", "--base-url", server.url, "--type", "CS,PFD")
        assert built.code == 0, built.out + built.err
        for dataset in ("minute", "day"):
            planned = run_cli(
                "plan", "--universe", "u.csv", "--dataset", dataset, "--from", str(START), "--to", str(END)
            )
            assert planned.code == 0, planned.out + planned.err
        ran = run_cli("run", "--base-url", server.url, "--workers", "4", "--rate", "5000", "--unadjusted")
        assert ran.code == 1, ran.out + ran.err  # the months before the plan's history fail
        audited = run_cli("audit", "--json")
        report = json.loads(audited.out)
    return work, market, {"universe": built.out, "audit": report}


def test_the_universe_keeps_every_listing_with_its_own_security(download):
    work, _, _ = download
    rows = pl.read_csv(work / "u.csv", infer_schema_length=0).to_dicts()
    by_ticker: dict[str, list[dict]] = {}
    for row in rows:
        by_ticker.setdefault(row["ticker"], []).append(row)
    # the reused symbol: two listings, two companies, two securities
    echo = by_ticker["ECHO"]
    assert len(echo) == 2
    assert {r["name"] for r in echo} == {"Echo Acoustics Corp.", "Echo Biotherapeutics Inc."}
    assert len({r["security_id"] for r in echo}) == 2
    assert all(r["link"] == "composite_figi" for r in echo)
    # the renamed company: FACE found from MTVS's ticker events, under MTVS's security
    (face,) = by_ticker["FACE"]
    (mtvs,) = by_ticker["MTVS"]
    assert (face["link"], face["security_id"]) == ("ticker_event", mtvs["security_id"])
    assert (face["first_date"], face["last_date"]) == ("2019-01-02", "2022-06-08")
    assert mtvs["first_date"] == "2022-06-09"  # the holder starts at its own symbol's event
    # no FIGI: an id polyledger derives from the symbol and the CIK
    (gone,) = by_ticker["GONE"]
    assert gone["link"] == "derived" and gone["security_id"] == f"PL:GONE:cik{gone['cik']}"
    # case-sensitive: a preferred and a common spelled alike are two securities
    assert by_ticker["ABCpA"][0]["security_id"] != by_ticker["ABCPA"][0]["security_id"]


def test_each_company_gets_its_bars_once_under_its_own_security(download):
    work, market, _ = download
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        listings = dl.listings(tickers=["ECHO"]).sort("first_day")
        first_id, second_id = listings.get_column("security_id").to_list()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the months before the plan's history failed
            a = dl.bars("minute", security=first_id).collect()
            b = dl.bars("minute", security=second_id).collect()
            everything = dl.bars("minute", tickers=["ECHO"]).collect()
    truth_a = served(market, "ECHO", HISTORY_START, ECHO_A_LAST)
    truth_b = served(market, "ECHO", ECHO_B_FIRST, END)
    assert truth_a.height > 0 and truth_b.height > 0
    assert_frame_equal(a.select(STORED_COLUMNS).sort("timestamp"), truth_a)
    assert_frame_equal(b.select(STORED_COLUMNS).sort("timestamp"), truth_b)
    # by ticker: every bar served under the symbol, each exactly once, the gap ones with no security
    assert everything.height == everything.get_column("timestamp").n_unique()
    gap = everything.filter(pl.col("security_id").is_null())
    assert_frame_equal(gap.select(STORED_COLUMNS).sort("timestamp"), served(market, "ECHO", *GAP))
    assert everything.height == truth_a.height + truth_b.height + gap.height


def test_the_renamed_company_is_whole_across_its_symbols(download):
    work, market, _ = download
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        (security,) = dl.listings(tickers=["MTVS"]).get_column("security_id").to_list()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bars = dl.bars("minute", security=security).collect()
    assert bars.get_column("timestamp").is_sorted()  # in time order across its symbols
    expected = pl.concat(
        [
            served(market, "FACE", HISTORY_START, RENAME - dt.timedelta(days=1)),
            served(market, "MTVS", RENAME, END),
        ]
    )
    assert set(bars.get_column("ticker")) == {"FACE", "MTVS"}
    assert_frame_equal(bars.select(STORED_COLUMNS), expected)


def test_a_renamed_symbols_window_covers_its_first_sessions_though_the_event_date_is_late(download):
    """The messy market dates FACE -> MTVS 2022-06-11 (a Saturday), as the recorded answer
    of /vX/reference/tickers/META/events dates FB -> META, while MTVS traded from 06-09.
    The trading places the change (FACE's last bar 06-08, MTVS's first after it 06-09 at a
    price continuing FACE's): both windows meet there, the universe says so, and MTVS's
    first sessions are the company's, none unattributed (found by a review of the
    stand-in against the samples: MTVS's window started at the event's date)."""
    work, market, outputs = download
    sample = json.loads(
        (FIXTURES / "api-mocks/vX/reference/tickers/META/events&types=ticker_change.json").read_text()
    )
    assert sample["results"]["events"][0]["date"] == "2022-06-11"  # the recorded answer
    assert market.events("MTVS")["events"][0]["date"] == RENAME_EVENT_DAY.isoformat() == "2022-06-11"
    rows = pl.read_csv(work / "u.csv", infer_schema_length=0)
    windows = rows.filter(pl.col("ticker").is_in(["FACE", "MTVS"])).select(
        "ticker", "first_date", "last_date"
    )
    assert sorted(windows.rows()) == [("FACE", "2019-01-02", "2022-06-08"), ("MTVS", "2022-06-09", None)]
    assert (
        "change of symbol placed by trading: FACE -> MTVS: the ticker event says 2022-06-11, the trading "
        "2022-06-09 (FACE last traded 2022-06-08, MTVS from 2022-06-09)" in outputs["universe"]
    )
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        (security,) = dl.listings(tickers=["MTVS"]).get_column("security_id").to_list()
        first_days = dl.bars("minute", tickers=["MTVS"], start="2022-06-01", end="2022-06-10").collect()
        (change,) = dl.reference("ticker_events").filter(pl.col("symbol") == "MTVS").collect().to_dicts()
    # the trading the events unit read, kept with the event: each symbol's day bars within a week
    assert (change["date"], change["previous_symbol"], change["trading_unread"]) == (
        RENAME_EVENT_DAY,
        "FACE",
        None,
    )
    assert [bar["day"] for bar in change["previous_bars"]] == [D(2022, 6, d) for d in (6, 7, 8)]
    assert [bar["day"] for bar in change["bars"]] == [D(2022, 6, d) for d in (9, 10, 13, 14, 15, 16, 17)]
    assert first_days.height == served(market, "MTVS", RENAME, D(2022, 6, 10)).height > 0
    assert set(first_days.get_column("security_id")) == {security}


def test_a_change_of_symbol_the_trading_cannot_confirm_keeps_its_date_and_is_reported(work):
    """The plan's history starts after the rename: the trading around it is refused (403),
    so the change stays at the event's date, the universe says it is unconfirmed, and the
    events unit is still done (its symbols found)."""
    market = SyntheticMarket(messy_listings(), seed=5)
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2022, 7, 1)) as server:
        built = run_cli("universe", "--out", "u.csv", "--base-url", server.url)
    assert built.code == 0, built.out + built.err
    assert (
        "change of symbol not confirmed by trading: FACE -> MTVS on 2022-06-11 (the event's date, kept): "
        "its trading could not be read: not_entitled" in built.out
    )
    rows = pl.read_csv(work / "u.csv", infer_schema_length=0)
    windows = rows.filter(pl.col("ticker").is_in(["FACE", "MTVS"])).select(
        "ticker", "first_date", "last_date"
    )
    assert sorted(windows.rows()) == [("FACE", "2019-01-02", "2022-06-10"), ("MTVS", "2022-06-11", None)]


def test_audit_reports_the_bars_of_nobody_and_the_listings(download):
    work, market, outputs = download
    report = outputs["audit"]
    minute = next(d for d in report["datasets"] if d["dataset"] == "minute")
    gap_bars = served(market, "ECHO", *GAP).height
    assert gap_bars > 0
    assert minute["unattributed"] == [
        {"ticker": "ECHO", "first_day": "2019-09-23", "last_day": "2019-09-27", "bars": gap_bars, "units": 1}
    ]
    # ECHO's 2019 day unit straddles the plan's history (2019-07-01): never done with half
    # its year, it failed, so its gap bars are not stored
    day = next(d for d in report["datasets"] if d["dataset"] == "day")
    assert day["unattributed"] == []
    listings = report["listings"]
    assert [ticker for ticker, _ in listings["reused"]] == ["ECHO"]
    assert any("FACE" in symbols and "MTVS" in symbols for _, symbols in listings["renamed"])
    shown = run_cli("audit", "--ledger", str(work / "ledger.db"))
    assert "unattributed: ECHO 2019-09-23..2019-09-27" in shown.out
    assert "reused symbol ECHO" in shown.out


def test_nothing_outside_the_entitlement_is_settled_and_no_paths_collide_ignoring_case(download):
    work, _, _ = download
    from polyledger.ledger import Ledger

    with Ledger(work / "ledger.db") as ledger:
        rows = ledger.query("SELECT dataset, period_end, state, error_class, file_path FROM units")
    bars = [r for r in rows if r.dataset in ("minute", "day")]
    before = [r for r in bars if str(r.period_end) < HISTORY_START.isoformat()]
    assert before and {(r.state, r.error_class) for r in before} == {("failed", "not_entitled")}
    after = [r for r in bars if str(r.period_end) >= HISTORY_START.isoformat() and r.dataset == "minute"]
    assert {r.state for r in after} <= {"done", "empty_confirmed"}
    # a unit straddling the history (2019's day bars) is never done with part of its days:
    # the days before its first bar were asked alone, and refused
    straddling = [r for r in bars if r.dataset == "day" and str(r.period_end) == "2019-12-31"]
    assert straddling and {(r.state, r.error_class) for r in straddling} == {("failed", "not_entitled")}
    paths = [r.file_path for r in rows if r.file_path]
    assert len({p.casefold() for p in paths}) == len(paths)


def test_the_last_day_of_a_delisted_name_is_asked_for(download):
    """delisted_utc is the last date traded: GONE's final session (2021-12-31) is stored."""
    work, market, _ = download
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        bars = dl.bars("minute", tickers=["GONE"], start="2021-12-01").collect()
    last = bars.get_column("timestamp").dt.convert_time_zone(str(ET)).dt.date().max()
    assert (
        last
        == D(2021, 12, 31)
        == served(market, "GONE", D(2021, 12, 1), D(2022, 1, 31))
        .get_column("timestamp")
        .dt.convert_time_zone(str(ET))
        .dt.date()
        .max()
    )

"""plan -> run -> compare, against a stand-in that varies what the real API may vary: every
response layout reaches the files exactly, through the decode path it must take; raw bars
over several pages under either cursor behaviour; a resultsCount with no results, and bars
outside the asked dates, never pass as data or as an empty month."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal
from support import API_KEY, read_dataset, run_cli, truth, write_universe

from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.periods import unit_periods
from polyledger.polygon import aggs
from polyledger.polygon.client import RetryPolicy
from polyledger.storage import BarStore
from polyledger.testing import Listing, Split, StandInServer, SyntheticMarket
from polyledger.testing.server import WITHHELD_AS, ResponseStyle

D = dt.date
SPLIT_DAY = D(2023, 2, 15)
LISTINGS = (
    Listing("SPLT", bars_per_day=700, splits=(Split(SPLIT_DAY, 1, 4),)),  # several pages a month
    Listing("THIN", bars_per_day=30),
    Listing("LATE", list_date=D(2023, 2, 20), bars_per_day=100),  # an empty month first
)
TICKERS = [listing.ticker for listing in LISTINGS] + ["NOSUCH"]
MINUTE = (D(2023, 1, 1), D(2023, 3, 31))
DAY = (D(2022, 1, 1), D(2023, 3, 31))
PAGE_CAP = 2_000


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=21)


class DecodeSpy:
    """Counts the pages with bars each decoder turned into bars (worker threads call it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pages: Counter[str] = Counter()

    def saw(self, path: str) -> None:
        with self._lock:
            self.pages[path] += 1


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    spy = DecodeSpy()
    fast, general = aggs._decode_fast, aggs._decode_general

    def spied_fast(body: bytes) -> aggs.AggregatesPage | None:
        page = fast(body)
        if page is not None and page.bars.height:
            spy.saw("fast")
        return page

    def spied_general(body: bytes) -> aggs.AggregatesPage:
        page = general(body)
        if page.bars.height:
            spy.saw("general")
        return page

    uniform = aggs._read_uniform

    def spied_uniform(body: bytes, start: int = 0, end: int | None = None) -> pl.DataFrame | None:
        bars = uniform(body, start, end)
        if bars is not None and bars.height:
            spy.saw("uniform")
        return bars

    monkeypatch.setattr(aggs, "_decode_fast", spied_fast)
    monkeypatch.setattr(aggs, "_decode_general", spied_general)
    monkeypatch.setattr(aggs, "_read_uniform", spied_uniform)
    return spy


def plan(work: Path, tickers: list[str], *, day: bool = True) -> None:
    write_universe(work / "universe.csv", tickers)
    first, last = MINUTE
    assert run_cli("plan", "--universe", "universe.csv", "--from", first, "--to", last).code == 0
    if day:
        args = ("--dataset", "day", "--from", DAY[0], "--to", DAY[1])
        assert run_cli("plan", "--universe", "universe.csv", *args).code == 0


def as_served(style: ResponseStyle, ticker: str, bars: pl.DataFrame) -> pl.DataFrame:
    """Stored-schema truth with vwap and transactions null where the style leaves them out."""
    t = pl.col("timestamp").dt.epoch("ms")
    return bars.with_columns(
        vwap=pl.when(style.lacks(ticker, "vw", t)).then(None).otherwise(pl.col("vwap")),
        transactions=pl.when(style.lacks(ticker, "n", t)).then(None).otherwise(pl.col("transactions")),
    )


def expected(
    market: SyntheticMarket, style: ResponseStyle, dataset: str, span: tuple[dt.date, dt.date], adjusted: bool
) -> pl.DataFrame:
    frames = [as_served(style, t, truth(market, dataset, t, *span, adjusted=adjusted)) for t in TICKERS]
    return pl.concat(frames).sort("ticker", "timestamp")


def units(work: Path) -> dict[tuple[str, str, str], tuple[str, int, str | None]]:
    with sqlite3.connect(work / "ledger.db") as connection:
        rows = connection.execute("SELECT dataset, ticker, period, state, rows, error_class FROM units")
        return {(d, t, p): (s, r, e) for d, t, p, s, r, e in rows.fetchall()}


def assert_units_match_the_truth(work: Path, market: SyntheticMarket, adjusted: bool) -> None:
    """Every unit settled, with the truth's row count; empty_confirmed exactly when it has none."""
    state = units(work)
    for dataset, grain, span in (("minute", "month", MINUTE), ("day", "year", DAY)):
        for ticker in TICKERS:
            for first, last in unit_periods(grain, *span):
                period = first.isoformat()[: 7 if grain == "month" else 4]
                bars = truth(market, dataset, ticker, first, last, adjusted=adjusted).height
                settled = ("done" if bars else "empty_confirmed", bars, None)
                assert state[(dataset, ticker, period)] == settled, (dataset, ticker, period)


def aggs_targets(server: StandInServer) -> list[str]:
    return [t for t in server.stats.snapshot()["targets"] if t.startswith("/v2/aggs/")]


# which decoder must turn pages with bars into bars, per layout: the fast path finds
# `"results":` and skips whitespace after it, then reads bars of one shape as CSV and any
# other array (laid out, spaced, of several shapes) as JSON once its values are checked
# (`aggs.misshapen_bars`); the general path is for envelopes it cannot cut
PATHS = {
    "compact": {"fast"},
    "lines": {"fast"},
    "pretty": {"fast"},
    "spaced": {"fast"},
    "mixed": {"fast"},
}


@pytest.mark.parametrize("adjusted", [True, False], ids=["adjusted", "raw"])
@pytest.mark.parametrize("layout", list(PATHS))
def test_every_layout_reaches_the_files_exactly_through_its_decoder(
    work, market, decoded, layout: str, adjusted: bool
) -> None:
    # answers as on a delayed plan, too: `"status": "DELAYED"` is success, as OK is
    style = ResponseStyle(layout=layout, shuffle_keys=True, missing_fields=0.05, delayed=True, seed=3)
    plan(work, TICKERS)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP, style=style) as server:
        flags = () if adjusted else ("--unadjusted",)
        result = run_cli("run", "--base-url", server.url, "--workers", "1", "--rate", "2000", *flags)
        targets = aggs_targets(server)
    assert result.code == 0, result.out + result.err
    assert_units_match_the_truth(work, market, adjusted)
    minute = expected(market, style, "minute", MINUTE, adjusted)
    assert_frame_equal(read_dataset(work / "data", "minute"), minute)
    assert_frame_equal(read_dataset(work / "data", "day"), expected(market, style, "day", DAY, adjusted))

    # the comparison has teeth: OTC bars, bars without vw or n, several pages, and split
    # prices where adjusted and raw differ
    assert minute["otc"].sum() > 0
    assert minute["vwap"].null_count() > 0 and minute["transactions"].null_count() > 0
    assert sum("cursor=" in t for t in targets) >= 10
    other = expected(market, style, "minute", MINUTE, not adjusted)
    assert not minute.filter(pl.col("ticker") == "SPLT").equals(other.filter(pl.col("ticker") == "SPLT"))
    # and the pages went through the decoder(s) their layout leads to
    assert set(decoded.pages) == PATHS[layout], decoded.pages
    with StandInServer(market, api_keys=(API_KEY,), style=style) as server:
        answer = requests.get(f"{server.url}{targets[0]}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.json()["status"] == "DELAYED"


def test_pages_as_the_api_writes_them_are_read_as_csv_exactly(work, market, decoded) -> None:
    """Compact pages in the API's key order, `otc` closing the OTC bars (the stand-in's
    plain style): every page with bars is read as CSV (`aggs._read_uniform`), none as JSON,
    and the files are exactly the market's bars."""
    plan(work, TICKERS)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", "1", "--rate", "2000")
    assert result.code == 0, result.out + result.err
    assert_units_match_the_truth(work, market, True)
    plain = ResponseStyle()
    minute = expected(market, plain, "minute", MINUTE, True)
    assert_frame_equal(read_dataset(work / "data", "minute"), minute)
    assert_frame_equal(read_dataset(work / "data", "day"), expected(market, plain, "day", DAY, True))
    assert minute["otc"].sum() > 0 and (~minute["otc"]).sum() > 0  # OTC bars among the others
    assert decoded.pages["uniform"] == decoded.pages["fast"] >= 10 and "general" not in decoded.pages


@pytest.mark.parametrize("keeps", [False, True], ids=["cursor_drops_adjusted", "cursor_keeps_adjusted"])
def test_raw_bars_over_many_pages_under_either_cursor(work, market, keeps: bool) -> None:
    """polygon-api.md: whether adjusted=false survives in the cursor is uncertain. When it
    does not, the first continuation page answers adjusted=true and is asked once more with
    adjusted=false, and every following page is asked with adjusted=false at once: one
    request more in all, never two a page; when it does, none more. Either way the files
    hold the raw bars, never a page of adjusted ones."""
    plan(work, ["SPLT"], day=False)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP, cursor_keeps_adjusted=keeps) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", "1", "--unadjusted")
        targets = aggs_targets(server)
        requests = server.stats.snapshot()["bars_requests"]
    assert result.code == 0, result.out + result.err
    raw = truth(market, "minute", "SPLT", *MINUTE, adjusted=False)
    assert_frame_equal(read_dataset(work / "data", "minute"), raw)
    assert not raw.equals(truth(market, "minute", "SPLT", *MINUTE, adjusted=True))

    pages = -(-raw.height // PAGE_CAP)
    assert pages >= 10 and targets[0].endswith("?adjusted=false&sort=asc&limit=50000")
    assert requests == len(targets) == pages + (0 if keeps else 1)
    continuations = targets[1:]
    asked_again = [t for t in continuations if t.endswith("&adjusted=false")]
    if keeps:
        assert asked_again == [] and len(continuations) == pages - 1
    else:
        # the first continuation bare, then asked again; every later one says it at once
        first, *later = continuations
        assert "adjusted" not in first and later[0] == first + "&adjusted=false"
        assert later == asked_again and len(later) == pages - 1
    with sqlite3.connect(work / "ledger.db") as connection:
        charged = connection.execute("SELECT sum(requests) FROM units").fetchone()[0]
    assert charged == len(targets)  # the asks again are charged to the units too


@pytest.mark.parametrize("withheld_as", WITHHELD_AS)
def test_results_count_without_results_fails_never_empty(work, market, withheld_as: str) -> None:
    """A page that says it has bars but sends none is bad_shape (retried, then failed),
    never an empty month; the other tickers are not affected."""
    plan(work, ["SPLT", "THIN"], day=False)
    options = RunOptions(
        workers=1, rate=2000, max_attempts=2, retry=RetryPolicy(max_retries=1, base_delay=0.001)
    )
    with (
        StandInServer(
            market, api_keys=(API_KEY,), withhold_results={"SPLT"}, withheld_as=withheld_as
        ) as server,
        Ledger(work / "ledger.db") as ledger,
    ):
        report = Run(
            ledger, BarStore(work / "data"), api_key=API_KEY, base_url=server.url, options=options
        ).execute()
        asked = [request for request in server.stats.requested if request[0] == "SPLT"]
        attempts = ledger.query(
            "SELECT u.period, a.outcome, a.error_class FROM unit_attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE u.ticker = 'SPLT' ORDER BY u.period, a.id"
        )
    assert not report.ok
    assert len(asked) == 2 * 2  # the three months asked together: 2 attempts x (1 try + 1 retry)
    state = units(work)
    for first, last in unit_periods("month", *MINUTE):
        month = first.isoformat()[:7]
        assert state[("minute", "SPLT", month)] == ("failed", None, "bad_shape")
        history = [(a.outcome, a.error_class) for a in attempts if a.period == month]
        assert history == [("pending", "bad_shape"), ("failed", "bad_shape")]  # back in the queue once
        thin = truth(market, "minute", "THIN", first, last, adjusted=True).height
        assert state[("minute", "THIN", month)] == ("done", thin, None)
    assert not (work / "data" / "minute" / "ticker=SPLT").exists()
    assert_frame_equal(
        read_dataset(work / "data", "minute"), truth(market, "minute", "THIN", *MINUTE, adjusted=True)
    )


def test_bars_before_the_asked_dates_fail_every_unit_out_of_range(work, market) -> None:
    """The first page of each request starts with bars from before its dates: the group
    fails, each unit is asked alone and fails too (permanent: never retried), nothing is
    stored and nothing is empty_confirmed."""
    plan(work, ["SPLT"], day=False)
    style = ResponseStyle(stray_before=3)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP, style=style) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", "1")
        requested = server.stats.requested
    assert result.code == 1
    assert set(units(work).values()) == {("failed", None, "out_of_range")}
    assert requested == [("SPLT", "2023-01-01", "2023-03-31")] + [
        ("SPLT", first.isoformat(), last.isoformat()) for first, last in unit_periods("month", *MINUTE)
    ]
    assert not (work / "data" / "minute").exists()
    with sqlite3.connect(work / "ledger.db") as connection:
        errors = {row[0] for row in connection.execute("SELECT last_error FROM units")}
    assert errors == {"3 bars outside the requested dates"}


def test_bars_after_the_asked_dates_fail_the_unit_they_arrive_with(work, market) -> None:
    """Pages arrive in time order and a month is settled once a page passes its end: the
    last page brings bars from after the asked dates, so the months already complete are
    stored exactly and the last one fails out_of_range."""
    plan(work, ["SPLT"], day=False)
    style = ResponseStyle(stray_after=2)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP, style=style) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", "1")
        requested = server.stats.requested
    assert result.code == 1
    state = units(work)
    (jan, feb, mar) = unit_periods("month", *MINUTE)
    for month, (first, last) in (("2023-01", jan), ("2023-02", feb)):
        assert state[("minute", "SPLT", month)] == (
            "done",
            truth(market, "minute", "SPLT", first, last, adjusted=True).height,
            None,
        )
    assert state[("minute", "SPLT", "2023-03")] == ("failed", None, "out_of_range")
    assert len({r for r in requested if r[1].count("-") == 2}) == 1  # one range, never asked again
    stored = read_dataset(work / "data", "minute")
    assert_frame_equal(stored, truth(market, "minute", "SPLT", jan[0], feb[1], adjusted=True))

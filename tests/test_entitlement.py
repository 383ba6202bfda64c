"""A plan entitled to a shorter history: the API may answer a range that reaches back
before it with only the entitled bars (polygon-api.md, "Entitlement boundaries"), so a
group's months before its first bar are never taken as empty on that answer's word."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, UNKNOWN, read_dataset, run_cli, truth, write_universe

from polyledger.fetch.units import UnitJob, UnitOutcome, process_units
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.listings import Listing, assign_security_ids
from polyledger.periods import unit_periods
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.storage import BarStore
from polyledger.testing import Listing as MarketListing
from polyledger.testing import StandInServer, SyntheticMarket
from polyledger.trading_days import trading_days

D = dt.date
HISTORY_START = D(2020, 1, 1)
START, END = D(2019, 1, 1), D(2021, 12, 31)
TICKERS = ["TINY", "MID3", "BF-B", UNKNOWN]  # sparse to denser, and one the API does not know


@pytest.mark.parametrize("straddle", ["clip", "403"])
def test_units_before_the_plans_history_fail_not_entitled_and_the_rest_equal_the_truth(
    work, market, straddle
):
    with StandInServer(market, api_keys=(API_KEY,), history_start=HISTORY_START, straddle=straddle) as server:
        write_universe(work / "universe.csv", TICKERS)
        for dataset in ("minute", "day"):
            planned = run_cli(
                "plan", "--universe", "universe.csv", "--dataset", dataset, "--from", START, "--to", END
            )
            assert planned.code == 0, planned.err
        result = run_cli("run", "--base-url", server.url, "--workers", "4", "--rate", "5000")
        answered = server.stats.by_status[200]
    assert result.code == 1  # failed units: the job is not complete

    with sqlite3.connect(work / "ledger.db") as connection:
        rows = connection.execute(
            "SELECT dataset, ticker, period_start, period_end, state, error_class, rows, requests FROM units"
        ).fetchall()
    assert len(rows) == len(TICKERS) * (36 + 3)
    for dataset, ticker, first, last, state, error_class, stored, _ in rows:
        first, last = D.fromisoformat(first), D.fromisoformat(last)
        if last < HISTORY_START:  # wholly before: never done, never confirmed empty
            assert (state, error_class) == ("failed", "not_entitled"), (dataset, ticker, first)
        else:
            expected = truth(market, dataset, ticker, first, last).height
            assert (state, stored) == ("done" if expected else "empty_confirmed", expected), (
                dataset,
                ticker,
                first,
            )
    for dataset in ("minute", "day"):
        expected = pl.concat([truth(market, dataset, t, HISTORY_START, END) for t in TICKERS])
        assert_frame_equal(read_dataset(work / "data", dataset), expected.sort("ticker", "timestamp"))
    # every answered request is charged to exactly one unit (a refused one returns nothing)
    assert sum(row[-1] for row in rows) == answered


def test_a_month_the_api_calls_future_fails_not_entitled_at_once_and_audit_says_so(work, market):
    """polygon-api.md, Errors: a 403 NOT_AUTHORIZED for future dates, handled as any 403:
    `failed` `not_entitled`, not retried, reported by audit. The API's today behind the
    one polyledger's clock calls ended (skew at the `yesterday` boundary): March 2024 is
    planned, the stand-in's today is 2024-03-12 (found by a review of the stand-in: it
    used to serve bars of any future date)."""
    with StandInServer(market, api_keys=(API_KEY,), today=D(2024, 3, 12)) as server:
        write_universe(work / "universe.csv", ["MID3"])
        planned = run_cli("plan", "--universe", "universe.csv", "--from", "2024-02-01", "--to", "2024-03-31")
        assert planned.code == 0, planned.err
        result = run_cli("run", "--base-url", server.url, "--workers", "1")
        asked = server.stats.bars_requests
        assert result.code == 1, result.out + result.err
        with sqlite3.connect(work / "ledger.db") as connection:
            units = connection.execute(
                "SELECT period_start, state, error_class, attempts FROM units ORDER BY period_start"
            ).fetchall()
        assert units == [("2024-02-01", "done", None, 1), ("2024-03-01", "failed", "not_entitled", 1)]
        assert asked == 1 + 2  # the two months together (403), then one by one; the 403 never retried
        audit = run_cli("audit", "--json")
        assert audit.code == 1
        (failure,) = json.loads(audit.out)["datasets"][0]["failures"]
        assert (failure["error_class"], failure["units"]) == ("not_entitled", 1)
        # once the month has ended for the API too, `retry --class not_entitled` gets it
        server.today = D(2024, 4, 1)
        assert run_cli("retry", "--class", "not_entitled").code == 0
        assert run_cli("run", "--base-url", server.url).code == 0
    stored = read_dataset(work / "data", "minute")
    assert_frame_equal(stored, truth(market, "minute", "MID3", D(2024, 2, 1), D(2024, 3, 31)))


# --- the listing windows' predicate ----------------------------------------------------------

NEWCO_MONTHS = list(unit_periods("month", D(2023, 1, 1), D(2023, 8, 31)))  # NEWCO listed 2023-06-14


def run_newco_group(
    tmp_path, market, listed_from: dt.date | None
) -> tuple[list[UnitOutcome], list[tuple[str, str]], dict[str, str]]:
    """NEWCO's January-August 2023 as one group over real HTTP, its listing in the ledger
    starting on `listed_from` (None: no listing recorded): the outcomes, the ranges the
    stand-in was asked, and each month's state."""
    with StandInServer(market, api_keys=(API_KEY,)) as server, Ledger(tmp_path / "ledger.db") as ledger:
        if listed_from is not None:
            ledger.record_listings(assign_security_ids([Listing("NEWCO", first_day=listed_from)]))
        ledger.add_units([PlannedUnit("minute", "NEWCO", s, e) for s, e in NEWCO_MONTHS])
        units = ledger.claim("w", 60, limit=len(NEWCO_MONTHS))
        assert len(units) == len(NEWCO_MONTHS)
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        job = UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True)
        outcomes = process_units(units, job)
        asked = [(frm, to) for _, frm, to in server.stats.requested]
        states = {
            row.period_start: row.state
            for row in ledger.query("SELECT period_start, state FROM units ORDER BY period_start")
        }
        charged = sum(row.requests for row in ledger.query("SELECT requests FROM units"))
    assert charged == len(asked)  # each request charged once
    return outcomes, asked, {str(k): v for k, v in states.items()}


def test_months_the_listing_windows_explain_are_settled_empty_without_another_request(tmp_path, market):
    # listed 2023-06-14: January-May lie wholly before the listing
    outcomes, asked, states = run_newco_group(tmp_path, market, D(2023, 6, 14))
    assert asked == [("2023-01-01", "2023-08-31")]  # the group's one request, nothing asked again
    assert [o.state for o in outcomes] == ["empty_confirmed"] * 5 + ["done"] * 3
    assert list(states.values()) == ["empty_confirmed"] * 5 + ["done"] * 3
    assert sum(o.requests for o in outcomes) == 1


def test_months_before_the_first_bar_that_nothing_explains_are_asked_again_one_by_one(tmp_path, market):
    # a listing said to start in March explains January and February only
    outcomes, asked, states = run_newco_group(tmp_path, market, D(2023, 3, 1))
    assert asked == [
        ("2023-01-01", "2023-08-31"),
        # June's first bar (the 14th) is after June's first day, and the ledger's listing
        # (from March) does not explain it: June's first day is asked alone (an empty 200:
        # inside the plan's history, so June's empty days are real)
        ("2023-06-01", "2023-06-01"),
        # March alone is empty, and starts before any day known inside the history: its
        # first day alone (an empty 200) proves it, and every later month with it
        ("2023-03-01", "2023-03-31"),
        ("2023-03-01", "2023-03-01"),
        ("2023-04-01", "2023-04-30"),
        ("2023-05-01", "2023-05-31"),
    ]
    assert set(states.values()) == {"empty_confirmed", "done"}  # an empty month alone is empty
    (tmp_path / "none").mkdir()
    _, asked_without, _ = run_newco_group(tmp_path / "none", market, None)
    # nothing explained: June's first day, every month before, January's first day alone
    assert len(asked_without) == 1 + 1 + 5 + 1


def test_months_a_plan_changed_during_the_fetch_are_taken_back_and_never_settled_on_the_old_windows(
    tmp_path, market
):
    """NEWCO's listing starts June 14 when the group is claimed; while its request is out,
    a plan says March. March-June (their windows changed) are taken back from the group
    (pending: the next run fetches them against the new windows), never settled empty on
    the old ones (found by a review: they were settled empty, the plan having queued again
    only settled units); the months the change leaves alone settle as the answer says."""
    with StandInServer(market, api_keys=(API_KEY,)) as server, Ledger(tmp_path / "ledger.db") as ledger:
        ledger.record_listings(assign_security_ids([Listing("NEWCO", first_day=D(2023, 6, 14))]))
        ledger.add_units([PlannedUnit("minute", "NEWCO", s, e) for s, e in NEWCO_MONTHS])
        units = ledger.claim("w", 60, limit=len(NEWCO_MONTHS))
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        ask = client.get
        planned = []

        def plan_then_ask(*args, **kwargs):  # type: ignore[no-untyped-def]
            if not planned:  # the plan commits while the group's first request is out
                recorded = ledger.record_listings(
                    assign_security_ids([Listing("NEWCO", first_day=D(2023, 3, 1))]), requeue=["minute"]
                )
                planned.append(recorded.requeued)
            return ask(*args, **kwargs)

        client.get = plan_then_ask  # type: ignore[method-assign]
        outcomes = process_units(units, UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True))
        states = [row.state for row in ledger.query("SELECT state FROM units ORDER BY period_start")]
    assert planned == [4]  # March-June, running, taken from the group
    assert sum(outcome.state == "lost" for outcome in outcomes) == 4
    assert states == ["empty_confirmed"] * 2 + ["pending"] * 4 + ["done"] * 2


def test_a_wholly_empty_group_asks_each_unit_alone_and_charges_the_group_once(tmp_path, market):
    with StandInServer(market, api_keys=(API_KEY,)) as server, Ledger(tmp_path / "ledger.db") as ledger:
        ledger.add_units([PlannedUnit("minute", UNKNOWN, s, e) for s, e in NEWCO_MONTHS[:3]])
        units = ledger.claim("w", 60, limit=3)
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        outcomes = process_units(units, UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True))
        asked = len(server.stats.requested)
    # the group, each month alone, and the first month's first day alone (then known inside
    # the plan's history, and the later months with it)
    assert asked == 1 + 3 + 1
    # the group's request goes with the first unit asked again: 3 + 1 + 1 == 5
    assert outcomes == [UnitOutcome("empty_confirmed", 0, 3)] + [UnitOutcome("empty_confirmed", 0, 1)] * 2


# --- a plan's history starting inside a month (found by a review: such months ended
# `empty_confirmed`, or `done` without their first days, on a clipped answer's word) --------


def _clipped_at(tmp_path, market, history_start, ticker, months, listings=()):  # type: ignore[no-untyped-def]
    """`months` of `ticker` as one group against a stand-in whose plan starts at
    `history_start` and clips a straddling range silently: {period_start: (state, rows,
    class)} and the ranges asked."""
    with StandInServer(market, api_keys=(API_KEY,), history_start=history_start, straddle="clip") as server, \
            Ledger(tmp_path / "ledger.db") as ledger:  # fmt: skip
        if listings:
            ledger.record_listings(assign_security_ids(list(listings)))
        ledger.add_units([PlannedUnit("minute", ticker, s, e) for s, e in months])
        units = ledger.claim("w", 60, limit=len(months))
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        process_units(units, UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True))
        asked = [(frm, to) for _, frm, to in server.stats.requested]
        rows = ledger.query("SELECT period_start, state, rows, error_class FROM units")
    return {str(r.period_start): (r.state, r.rows, r.error_class) for r in rows}, asked


def test_a_month_straddling_the_history_start_is_never_confirmed_empty(tmp_path):
    # GONE traded April 3-20; the plan's history starts Monday April 24: April's answer,
    # alone, is clipped to nothing
    market = SyntheticMarket([MarketListing("GONE", delist_date=D(2023, 4, 20), bars_per_day=150)], seed=11)
    months = list(unit_periods("month", D(2023, 1, 1), D(2023, 6, 30)))
    states, asked = _clipped_at(
        tmp_path, market, D(2023, 4, 24), "GONE", months, [Listing("GONE", last_day=D(2023, 4, 20))]
    )
    assert truth(market, "minute", "GONE", D(2023, 4, 1), D(2023, 4, 30)).height > 1000
    assert states["2023-04-01"] == ("failed", None, "not_entitled")  # its first day alone: a 403
    assert ("2023-04-03", "2023-04-03") in asked
    assert states["2023-05-01"] == states["2023-06-01"] == ("empty_confirmed", 0, None)  # delisted


def test_a_month_straddling_the_history_start_never_ends_done_without_its_first_days(tmp_path):
    # one bar a day: the history starts on a day without a bar, after days with one
    market = SyntheticMarket([MarketListing("SPRS", bars_per_day=1)], seed=11)
    month = (D(2021, 1, 1), D(2021, 1, 31))
    days = trading_days(*month)
    start = next(
        day
        for index, day in enumerate(days[1:], start=1)
        if truth(market, "minute", "SPRS", days[0], days[index - 1]).height
        and not truth(market, "minute", "SPRS", day, day).height
    )
    states, asked = _clipped_at(tmp_path, market, start, "SPRS", [month])
    # the answer's first bar is after the month's first day: that day alone is a 403
    assert asked == [("2021-01-01", "2021-01-31"), ("2021-01-04", "2021-01-04")]
    assert states == {"2021-01-01": ("failed", None, "not_entitled")}


# --- a reused symbol's month straddling the plan's history (found by a review) --------


def test_a_reused_symbols_month_clipped_by_the_plans_history_is_never_done_without_the_first_companys_days(
    tmp_path,
):
    """Promise: a month straddling the plan's history is never `done` without its first
    days (operations.md: "its listing's first day not explaining it"). REUS is one company
    until Friday 2023-03-10 and an unrelated one from Friday 2023-03-17; the plan's history
    starts Wednesday 2023-03-15 and the API clips the straddling answer silently. The
    answer's first bar is the second company's (17th). The second listing starting on the
    17th is taken to explain every earlier day of March, although the first company's
    listing covers March 1-10: no probe is made, and March ends `done` holding none of the
    first company's bars."""

    first_gone, second_listed, history = D(2023, 3, 10), D(2023, 3, 17), D(2023, 3, 15)
    market = SyntheticMarket(
        [
            MarketListing("REUS", delist_date=first_gone, bars_per_day=150),
            MarketListing("REUS", list_date=second_listed, bars_per_day=150),
        ],
        seed=11,
    )
    march = (D(2023, 3, 1), D(2023, 3, 31))
    first_company_bars = truth(market, "minute", "REUS", D(2023, 3, 1), first_gone).height
    assert first_company_bars > 500  # the first company traded six sessions of March
    with StandInServer(market, api_keys=(API_KEY,), history_start=history, straddle="clip") as server, \
            Ledger(tmp_path / "ledger.db") as ledger:  # fmt: skip
        ledger.record_listings(
            assign_security_ids(
                [Listing("REUS", last_day=first_gone), Listing("REUS", first_day=second_listed)]
            )
        )
        ledger.add_units([PlannedUnit("minute", "REUS", *march)])
        units = ledger.claim("w", 60, limit=1)
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        process_units(units, UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True))
        (row,) = ledger.query("SELECT state, rows, error_class FROM units")
    full_month = truth(market, "minute", "REUS", *march).height
    # March 1-10 lie before the plan's history: the unit must fail (not_entitled) or be
    # asked again, never be `done` with only the second company's bars
    assert not (row.state == "done" and row.rows < full_month), (row.state, row.rows, full_month)


def test_a_reused_symbols_month_clipped_to_nothing_is_never_confirmed_empty(tmp_path):
    """Promise: `empty_confirmed` only when the API truly answered no bars, never after a
    clipped entitlement answer. REUS is one company until 2023-03-10; the ledger's second
    listing of the symbol starts 2023-03-27 (its list date), and it first trades in April.
    The plan's history starts 2023-03-15 and the straddling answer for March is clipped to
    nothing. The probe of the month's first day is skipped in favour of the second
    listing's first day (the 27th, inside the history: an empty 200), so March is
    confirmed empty although the first company traded six sessions in it."""

    first_gone, history = D(2023, 3, 10), D(2023, 3, 15)
    market = SyntheticMarket(
        [
            MarketListing("REUS", delist_date=first_gone, bars_per_day=150),
            MarketListing("REUS", list_date=D(2023, 4, 3), bars_per_day=150),
        ],
        seed=11,
    )
    march = (D(2023, 3, 1), D(2023, 3, 31))
    assert truth(market, "minute", "REUS", *march).height > 500  # the first company's six sessions
    assert truth(market, "minute", "REUS", history, march[1]).height == 0  # nothing inside the history
    with StandInServer(market, api_keys=(API_KEY,), history_start=history, straddle="clip") as server, \
            Ledger(tmp_path / "ledger.db") as ledger:  # fmt: skip
        ledger.record_listings(
            assign_security_ids(
                [Listing("REUS", last_day=first_gone), Listing("REUS", first_day=D(2023, 3, 27))]
            )
        )
        ledger.add_units([PlannedUnit("minute", "REUS", *march)])
        units = ledger.claim("w", 60, limit=1)
        client = PolygonClient(API_KEY, base_url=server.url, limiter=RateLimiter(1000.0))
        process_units(units, UnitJob(client, ledger, BarStore(tmp_path / "data"), adjusted=True))
        (row,) = ledger.query("SELECT state, rows, error_class FROM units")
    assert row.state != "empty_confirmed", (row.state, row.rows, row.error_class)

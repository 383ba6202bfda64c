"""A bug that fails most units the same way stops the run (lesson 11: an UnboundLocalError
once failed 100% of units, unnoticed), instead of burning every unit into `failed`."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterator

import polars as pl
import pytest
from support import API_KEY, run_cli, write_universe

import polyledger.fetch.units
from polyledger.fetch.runner import RunStats
from polyledger.fetch.units import UnitOutcome
from polyledger.testing import Listing, StandInServer, SyntheticMarket

WORKERS = 4
FREE_FAILURES = 12  # failures let through at once: more than the 10 outcomes the check needs
GUARD = 30.0  # real seconds a held failure waits for the stop: only bounds a broken stop
TICKERS = [f"BUG{index:02d}" for index in range(39)] + ["LATE"]
BUG = "cannot access local variable 'last_day' where it is not associated with a value"


class PageHandlingBug:
    """Stands in for `iter_pages` in the worker: the first page (or the empty answer) really
    arrives from the stand-in, then the code handling it raises UnboundLocalError, for every
    group of units. After the first FREE_FAILURES groups each failure first waits for the
    run's stop: the stop is then decided while most units are untouched, however fast this
    machine fails them (were it not held, one supervisor tick could fail them all)."""

    def __init__(self, real: Callable[..., Iterator[pl.DataFrame]]) -> None:
        self.real = real
        self.groups = 0
        self.stop_never_came = False
        self._lock = threading.Lock()

    def __call__(self, client, *args, **kwargs) -> Iterator[pl.DataFrame]:  # type: ignore[no-untyped-def]
        for _page in self.real(client, *args, **kwargs):
            break
        with self._lock:
            self.groups += 1
            held = self.groups > FREE_FAILURES and not self.stop_never_came
        if held and not client.stop.wait(GUARD):
            self.stop_never_came = True  # let the rest fail at once: the test fails on its checks
        raise UnboundLocalError(BUG)
        yield  # a generator, as iter_pages is


@pytest.fixture
def small_market() -> SyntheticMarket:
    """Forty tickers, one of them not listed yet in the month asked (an empty answer)."""
    listings = [Listing(ticker, bars_per_day=5) for ticker in TICKERS[:-1]]
    listings.append(Listing("LATE", list_date=dt.date(2023, 6, 1), bars_per_day=5))
    return SyntheticMarket(listings, seed=3)


def units_by_state(ledger_path) -> dict[str, list[tuple[str, int, str | None]]]:
    with sqlite3.connect(ledger_path) as connection:
        rows = connection.execute("SELECT state, ticker, attempts, error_class FROM units").fetchall()
    states: dict[str, list[tuple[str, int, str | None]]] = {}
    for state, ticker, attempts, error_class in rows:
        states.setdefault(state, []).append((ticker, attempts, error_class))
    return states


def test_a_bug_failing_most_units_stops_the_run_and_leaves_the_rest_pending(work, small_market, monkeypatch):
    bug = PageHandlingBug(polyledger.fetch.units.iter_pages)
    monkeypatch.setattr(polyledger.fetch.units, "iter_pages", bug)
    with StandInServer(small_market, api_keys=(API_KEY,)) as server:
        write_universe(work / "universe.csv", TICKERS)
        assert (
            run_cli("plan", "--universe", "universe.csv", "--from", "2023-03-01", "--to", "2023-03-31").code
            == 0
        )
        result = run_cli("run", "--base-url", server.url, "--workers", WORKERS)
    said = result.out + result.err
    assert not bug.stop_never_came, "the run went on failing units: it never stopped itself"
    assert result.code == 1, said
    assert "internal:UnboundLocalError" in said and "this is a bug in polyledger" in said, said

    states = units_by_state(work / "ledger.db")
    assert set(states) == {"failed", "pending"}, states.keys()  # never done, empty_confirmed or running
    failed, pending = states["failed"], states["pending"]
    # each group (one unit here) the bug touched is failed with its class; one more per
    # worker at most: a held one, and one claimed just before the stop was set
    assert len(failed) == bug.groups <= FREE_FAILURES + 2 * WORKERS
    assert {error_class for _, _, error_class in failed} == {"internal:UnboundLocalError"}
    assert len(pending) == len(TICKERS) - bug.groups >= len(TICKERS) - FREE_FAILURES - 2 * WORKERS
    assert {(attempts, error_class) for _, attempts, error_class in pending} == {(0, None)}  # never tried
    with sqlite3.connect(work / "ledger.db") as connection:
        assert connection.execute("SELECT outcome FROM runs").fetchall() == [("stopped",)]


def outcomes(*classes: str | None) -> RunStats:
    stats = RunStats()
    for error_class in classes:
        stats.add(UnitOutcome("failed" if error_class else "done", error_class=error_class))
    return stats


@pytest.mark.parametrize(
    ("recent", "verdict"),
    [
        ((["internal:UnboundLocalError"] * 10), "internal:UnboundLocalError"),  # enough to decide
        ((["internal:UnboundLocalError"] * 9), None),  # too few outcomes to call it a bug
        ((["internal:KeyError"] * 16 + [None] * 4), "internal:KeyError"),  # 80% of the recent ones
        ((["internal:KeyError"] * 15 + [None] * 5), None),  # 75%: bad luck, not yet a bug
        ((["internal:KeyError"] * 8 + ["internal:TypeError"] * 8 + [None] * 4), None),  # not the same way
        ((["not_entitled"] * 20), None),  # the data's answer, not a bug: the run goes on
        ((["bad_request"] * 20), "bad_request"),  # a 400 for every unit: our request is wrong
        (([None] * 20 + ["internal:KeyError"] * 20), "internal:KeyError"),  # the last 20 count
    ],
)
def test_only_most_recent_units_failing_the_same_internal_way_is_a_bug(recent, verdict):
    assert outcomes(*recent).systematic_internal_error() == verdict


def test_the_total_grows_with_units_planned_during_the_run():
    """Five units counted at the start, six settled (one planned meanwhile, by another
    terminal or a sync), two still pending: progress says 6/8, never 6/5; before the count
    is reached the ledger is not asked again."""
    asked: list[int] = []

    def in_scope() -> int:
        asked.append(2)
        return 2

    stats = outcomes(*[None] * 4)
    stats.total_units = 5
    stats.recount(in_scope, None)
    assert (stats.settled, stats.total_units, asked) == (4, 5, [])
    stats.add(UnitOutcome("done"))
    stats.add(UnitOutcome("empty_confirmed"))
    stats.recount(in_scope, None)
    assert (stats.settled, stats.total_units) == (6, 8)

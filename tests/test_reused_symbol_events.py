"""A split of a reused symbol belongs to the company that holds the symbol then, never to
one that left it (found by a review of the rename fallback of `adjust.EventOwners`).

RENCO traded as OLD, then as NEW; OTHERCO took the freed symbol OLD later. The API lists
a company's events under a symbol it has then or later (polygon-io/issues#253), and under
one it left only when dated in the few sessions after it (a reverse split and a rename
on one day): OTHERCO's split under OLD is no event of RENCO's, however RENCO's bars are
read, and one that both could own is said. Real SQLite ledgers, a stand-in API on
127.0.0.1, fixed dates."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest
from support import fetch_raw

import polyledger
from polyledger.adjust import UnsettledAdjustmentWarning
from polyledger.datasets.reference import plan_reference
from polyledger.ledger import Ledger
from polyledger.listings import EventOwners
from polyledger.listings import Listing as Window
from polyledger.plan import plan
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members

D = dt.date
HEADER = "ticker,security_id,list_date,delisted_utc\n"
KEY = "reused-symbol-key"


def _fetch(folder: Path, server: StandInServer, datasets: tuple[str, ...]) -> None:
    fetch_raw(folder, server.url, KEY, datasets)


def _reused_after_a_rename(folder: Path, other_split: Split, taken_on: dt.date = D(2019, 9, 3)) -> None:
    """RENCO traded as OLD until 2019-06-28 and as NEW from 2019-07-01 (a rename; it never
    split). Another company, OTHERCO, lists under the freed symbol OLD from `taken_on` and
    makes `other_split` (listed under OLD, its symbol). Raw day bars of 2019, and the
    splits of both symbols, fetched."""
    old = Listing("OLD", delist_date=D(2019, 6, 28), bars_per_day=20, company="renco", renamed=True)
    new = Listing("NEW", list_date=D(2019, 7, 1), bars_per_day=20, company="renco")
    reuse = Listing("OLD", list_date=taken_on, bars_per_day=20, company="other", splits=(other_split,))
    (folder / "u.csv").write_text(
        HEADER + f"OLD,RENCO,,2019-06-28\nNEW,RENCO,2019-07-01,\nOLD,OTHERCO,{taken_on},\n", encoding="utf-8"
    )
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["OLD", "NEW"], "splits", D(2020, 1, 2))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2019, 1, 1), D(2019, 12, 31))
    with StandInServer(SyntheticMarket([old, new, reuse], seed=3), api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "day"))


def _renco_split_factors(folder: Path, **read: object) -> list[float]:
    """The distinct adjusted / raw close ratios of RENCO's bars in a read."""
    with polyledger.open(folder / "ledger.db", folder / "data") as dl, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = dl.bars("day", **read).collect()  # type: ignore[arg-type]
        adjusted = dl.bars("day", adjust="splits", **read).collect()  # type: ignore[arg-type]
    renco = (adjusted["close"] / raw["close"]).filter(raw["security_id"] == "RENCO")
    assert renco.len() > 100
    return sorted(set(renco.round(9).to_list()))


def test_another_companys_split_under_a_reused_symbol_does_not_adjust_the_company_that_left_it(tmp_path):
    """RENCO left the symbol OLD (renamed to NEW); OTHERCO took OLD and split 1:2 on
    2019-10-01, inside OTHERCO's own listing of OLD. Read by RENCO's current symbol,
    `dl.bars("day", tickers=["NEW"], adjust="splits")`: `_related_listings` gives RENCO's
    listings only (OTHERCO's listing of OLD is not RENCO's), `_split_rows` reads OLD's
    splits (OTHERCO's), and `security_on("OLD", 2019-10-01)` finds no listing of OLD
    covering the day among them, then falls back to "the one company among OLD's that
    traded under another of its symbols" that day: RENCO, as NEW. RENCO's bars before
    2019-10-01 are halved and their volumes doubled by a split it never made; before the
    day's change the split was (rightly) no company's here. Read as security="RENCO" it is
    right (OTHERCO's listing is then among the listings)."""
    _reused_after_a_rename(tmp_path, Split(D(2019, 10, 1), 1, 2))
    assert _renco_split_factors(tmp_path, security="RENCO") == [1.0]  # consistent: no split of RENCO's
    factors = _renco_split_factors(tmp_path, tickers=["NEW"])
    assert factors == [1.0], f"RENCO's bars read as NEW adjusted by OTHERCO's 1:2 split: factors {factors}"


def test_a_split_of_a_reused_symbol_dated_between_its_companies_is_not_given_to_the_one_that_left(tmp_path):
    """The same two companies; OTHERCO's split is listed under OLD dated 2019-08-26, a few
    days before OTHERCO's first recorded session of OLD (2019-09-03): a listing date a few
    days off, or a split made just before the listing. On that day no listing of OLD is
    open. `security_on` takes the one company of OLD's that traded under another symbol
    then -- RENCO as NEW -- although OLD is RENCO's *earlier* symbol: the API lists a
    company's events under the symbol it has now or later (polygon-io/issues#253, the
    change's own rationale), never under one it left, which another company holds now.
    RENCO's whole series before 2019-08-26 is halved, even read as security="RENCO"."""
    _reused_after_a_rename(tmp_path, Split(D(2019, 8, 26), 1, 2))
    factors = _renco_split_factors(tmp_path, security="RENCO")
    assert factors == [1.0], f"RENCO's bars adjusted by a split listed under the symbol it left: {factors}"


def test_a_split_of_a_symbol_left_the_session_before_and_taken_days_later_is_said_not_given(tmp_path):
    """RENCO left OLD on 2019-06-28 (trading as NEW from 07-01); OTHERCO lists under OLD
    from 2019-07-03, and a 1:2 split is listed under OLD dated 07-01, in the gap. A split
    under the symbol a company left, dated on its first session under the new one, is
    that company's (a reverse split and a rename on one day: `EventOwners`); a split
    dated days before a newcomer's first recorded session may be the newcomer's (its
    list date a few days late). Both could own it: it changes neither company's bars,
    and the read says so, naming OLD, the date and both companies."""
    _reused_after_a_rename(tmp_path, Split(D(2019, 7, 1), 1, 2), taken_on=D(2019, 7, 3))
    with polyledger.open(tmp_path / "ledger.db", tmp_path / "data") as dl:
        raw = dl.bars("day").collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adjusted = dl.bars("day", adjust="splits").collect()
    factors = sorted(set((adjusted["close"] / raw["close"]).round(9).to_list()))
    assert factors == [1.0], f"adjusted / raw closes {factors}: the split given to one of its possible owners"
    said = [str(w.message) for w in caught if issubclass(w.category, UnsettledAdjustmentWarning)]
    assert any("OLD 2019-07-01" in line and "RENCO" in line and "OTHERCO" in line for line in said), said


def _owners(taken_on: dt.date | None = None) -> EventOwners:
    """RENCO traded as OLD until Friday 2019-06-28, as NEW from 07-01; OTHERCO lists under
    OLD from `taken_on` (None: nobody takes OLD again)."""
    windows = [
        Window("OLD", None, D(2019, 6, 28), "RENCO", "universe_file"),
        Window("NEW", D(2019, 7, 1), None, "RENCO", "universe_file"),
    ]
    if taken_on is not None:
        windows.append(Window("OLD", taken_on, None, "OTHERCO", "universe_file"))
    return EventOwners(windows)


@pytest.mark.parametrize(
    ("day", "owner"),
    [(D(2019, 7, 1), "RENCO"), (D(2019, 7, 8), "RENCO"), (D(2019, 7, 9), None)],
    ids=["1st-session-after", "5th-session-after", "6th-session-after"],
)
def test_the_company_that_left_a_symbol_owns_its_events_of_the_five_sessions_after(day, owner):
    """An event listed under OLD, dated in no listing of OLD, is RENCO's (which left OLD
    and trades as NEW) for the 5 sessions after OLD's last, counted on the exchange's
    calendar (2019-07-04 is no session); later, nobody's, and not a doubt between two."""
    owners = _owners()
    assert owners.security_on("OLD", day) == owner
    assert owners.ambiguous == {}


@pytest.mark.parametrize(
    ("taken_on", "owner"),
    [(D(2019, 7, 15), None), (D(2019, 7, 16), "RENCO")],
    ids=["5-sessions", "6-sessions"],
)
def test_a_symbol_left_is_in_doubt_while_another_company_lists_under_it_within_five_sessions(taken_on, owner):
    """An event of OLD dated 2019-07-08 (RENCO's 5th session as NEW): with OTHERCO listing
    under OLD 5 sessions later, either could own it (a listing date a few days late), and
    it is kept as a doubt between the two; with OTHERCO 6 sessions later, it is RENCO's."""
    owners = _owners(taken_on)
    assert owners.security_on("OLD", D(2019, 7, 8)) == owner
    assert owners.ambiguous == ({} if owner else {("OLD", D(2019, 7, 8)): {"RENCO", "OTHERCO"}})


def _two_companies_took_the_symbol_later(folder: Path) -> None:
    """ACO traded as A0 until 2019-06-28, then as X until 2019-09-27 (delisted); BCO traded
    as B0 until 2019-10-31, then took the freed X. ACO's 1:2 split (2019-03-04) and 0.25
    dividend (ex 2019-05-06), made as A0, are listed under X only: on those days both
    companies traded under another symbol, and both took X later. Raw day bars of 2019,
    splits and dividends of every symbol, fetched."""
    events = {"listed_under": ("X",)}
    a0 = Listing(
        "A0",
        delist_date=D(2019, 6, 28),
        bars_per_day=20,
        company="aco",
        renamed=True,
        splits=(Split(D(2019, 3, 4), 1, 2, **events),),
        dividends=(Dividend(D(2019, 5, 6), 0.25, **events),),
    )
    ax = Listing("X", list_date=D(2019, 7, 1), delist_date=D(2019, 9, 27), bars_per_day=20, company="aco")
    b0 = Listing("B0", delist_date=D(2019, 10, 31), bars_per_day=20, company="bco", renamed=True)
    bx = Listing("X", list_date=D(2019, 11, 1), bars_per_day=20, company="bco")
    (folder / "u.csv").write_text(
        HEADER + "A0,ACO,,2019-06-28\nX,ACO,2019-07-01,2019-09-27\nB0,BCO,,2019-10-31\nX,BCO,2019-11-01,\n",
        encoding="utf-8",
    )
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["A0", "X", "B0"], "splits", D(2020, 1, 2))
        plan_reference(ledger, ["A0", "X", "B0"], "dividends", D(2020, 1, 2))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2019, 1, 1), D(2019, 12, 31))
    with StandInServer(SyntheticMarket([a0, ax, b0, bx], seed=3), api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "dividends", "day"))


@pytest.mark.parametrize(
    "read", [{"security": "ACO"}, {"security": "BCO"}, {"tickers": ["X"]}, {}], ids=["ACO", "BCO", "X", "all"]
)
def test_an_event_two_companies_of_a_reused_symbol_could_own_is_said_not_dropped_silently(tmp_path, read):
    """An event of X dated before either company held X belongs, by `EventOwners`, to the
    one company of X's that traded under another symbol then: here both did, and the
    event is no known company's. It was left out without a word. However it is read,
    the split and the dividend change no bar (a guess would move one company's prices
    by another's event), and the read says so, naming X, the dates and both companies."""
    _two_companies_took_the_symbol_later(tmp_path)
    with polyledger.open(tmp_path / "ledger.db", tmp_path / "data") as dl:
        raw = dl.bars("day", **read).collect()  # type: ignore[arg-type]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total = dl.bars("day", adjust="splits+dividends", **read).collect()  # type: ignore[arg-type]
    factors = sorted(set((total["close"] / raw["close"]).round(9).to_list()))
    assert factors == [1.0], f"read {read}: adjusted / raw closes {factors}"
    said = [str(w.message) for w in caught if issubclass(w.category, UnsettledAdjustmentWarning)]
    assert any("X 2019-03-04" in line and "ACO" in line and "BCO" in line for line in said), said
    assert any("X 2019-05-06" in line for line in said), said


def test_a_split_between_two_companies_swapping_a_symbol_within_days_is_left_out_and_said():
    """ALFA trades as AAA until 2019-07-12 and as AAAX from 2019-07-15; BETA trades as BBB
    until 2019-07-16 and as AAA from 2019-07-17. A 1:2 split of 2019-07-15 listed under AAA
    is either's as the provider lists events: BETA's, listed under the symbol it took
    days later (polygon-io/issues#253), or ALFA's, a split on its rename day listed under
    the symbol it left. Neither rule outranks the other (a review asked for BETA's, the
    rule before the left symbol's): the event is left out and said, never given to one
    company by a guess that moves the other's prices."""
    listings = [
        Window("AAA", None, dt.date(2019, 7, 12), "ALFA"),
        Window("AAAX", dt.date(2019, 7, 15), None, "ALFA"),
        Window("BBB", None, dt.date(2019, 7, 16), "BETA"),
        Window("AAA", dt.date(2019, 7, 17), None, "BETA"),
    ]
    owners = EventOwners(listings)
    assert owners.security_on("AAA", dt.date(2019, 7, 15)) is None
    assert owners.ambiguous == {("AAA", dt.date(2019, 7, 15)): {"ALFA", "BETA"}}

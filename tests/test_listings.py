"""Listings, not symbols: a universe file's several-rows rule, security ids, attribution of
bars by session date, and the ledger's listings table (`polyledger/listings.py`)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from polyledger.bars import split_by_unit
from polyledger.errors import InputError
from polyledger.ledger import Ledger
from polyledger.listings import Listing, assign_security_ids, check_windows
from polyledger.plan import plan
from polyledger.universe import read_members

D = dt.date


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "u.csv"
    path.write_text(text, encoding="utf-8")
    return path


# --- the universe file ------------------------------------------------------------


def test_one_ticker_on_several_rows_is_several_listings(tmp_path):
    members = read_members(
        write(
            tmp_path,
            "ticker,name,cik,composite_figi,list_date,delisted_utc\n"
            "ABC,Alpha Old Corp,0000000001,,2004-05-03,2019-06-28T00:00:00Z\n"
            "ABC,Beta New Inc,0000000002,BBG00BETA001,2021-03-01,\n",
        )
    )
    assert [(m.ticker, m.first_day, m.last_day, m.security_id, m.link) for m in members] == [
        ("ABC", D(2004, 5, 3), D(2019, 6, 28), "PL:ABC:cik0000000001", "derived"),
        ("ABC", D(2021, 3, 1), None, "BBG00BETA001", "composite_figi"),
    ]


@pytest.mark.parametrize(
    "rows",
    [
        "ABC,,2019-06-28\nABC,2019-06-28,\n",  # the same last and first day
        "ABC,,\nABC,2021-03-01,\n",  # an unbounded row overlaps every other
        "ABC,2010-01-04,2019-06-28\nABC,2019-01-02,2020-01-02\n",
    ],
)
def test_overlapping_windows_of_one_ticker_are_bad_input(tmp_path, rows):
    with pytest.raises(InputError) as caught:
        read_members(write(tmp_path, "ticker,list_date,delisted_utc\n" + rows))
    message = str(caught.value)
    assert message.startswith(
        "u.csv line 3: ticker 'ABC' is already listed on line 2 with an overlapping window"
    )
    assert "\n" not in message


def test_last_date_and_first_date_bound_a_window_as_polyledger_set_them(tmp_path):
    (member,) = read_members(
        write(
            tmp_path,
            "ticker,list_date,first_date,delisted_utc,last_date\nOLD,2004-01-02,2012-05-18,,2022-06-08\n",
        )
    )
    assert (member.first_day, member.last_day) == (D(2012, 5, 18), D(2022, 6, 8))


def test_a_security_id_in_the_file_is_kept(tmp_path):
    (member,) = read_members(write(tmp_path, "ticker,security_id,link\nFB,BBG000MM2P62,ticker_event\n"))
    assert (member.security_id, member.link) == ("BBG000MM2P62", "ticker_event")
    with pytest.raises(InputError, match="unknown link 'guess'"):
        read_members(write(tmp_path, "ticker,security_id,link\nFB,X,guess\n"))


def test_derived_ids_tell_apart_one_symbols_listings_without_figi_or_cik():
    assigned = assign_security_ids(
        [Listing("ABC", None, D(2019, 6, 28)), Listing("ABC", D(2021, 3, 1), None), Listing("XYZ")]
    )
    assert [item.security_id for item in assigned] == ["PL:ABC:start", "PL:ABC:2021-03-01", "PL:XYZ"]


def test_check_windows_refuses_overlaps_in_code_too():
    check_windows([Listing("A", None, D(2019, 1, 1)), Listing("A", D(2019, 1, 2)), Listing("B")])
    with pytest.raises(InputError, match="overlapping listings"):
        check_windows([Listing("A", None, D(2019, 1, 2)), Listing("A", D(2019, 1, 2))])


# --- attribution ------------------------------------------------------------------


def raw_bars(days: list[dt.date]) -> pl.DataFrame:
    """One raw bar at 10:00 ET on each day (`t o h l c v vw n otc`, as the decoder gives)."""
    from zoneinfo import ZoneInfo

    et = ZoneInfo("America/New_York")
    t = [int(dt.datetime(d.year, d.month, d.day, 10, tzinfo=et).timestamp() * 1000) for d in days]
    n = len(days)
    return pl.DataFrame(
        {
            "t": t,
            "o": [1.0] * n,
            "h": [1.0] * n,
            "l": [1.0] * n,
            "c": [1.0] * n,
            "v": [1.0] * n,
            "vw": [1.0] * n,
            "n": [1] * n,
            "otc": [None] * n,
        },
        schema_overrides={"otc": pl.Boolean},
    )


def test_each_bar_gets_the_security_of_the_listing_holding_its_date():
    old, new = Listing("ABC", None, D(2019, 6, 28), "OLD"), Listing("ABC", D(2019, 7, 8), None, "NEW")
    days = [D(2019, 6, 27), D(2019, 6, 28), D(2019, 7, 1), D(2019, 7, 3), D(2019, 7, 8), D(2019, 7, 9)]
    (june, july) = split_by_unit(
        raw_bars(days), "ABC", [(D(2019, 6, 1), D(2019, 6, 30)), (D(2019, 7, 1), D(2019, 7, 31))], [old, new]
    )
    assert june.bars.get_column("security_id").to_list() == ["OLD", "OLD"]
    assert june.unattributed is None
    # the gap between the two companies belongs to neither: null, and summarised
    assert july.bars.get_column("security_id").to_list() == [None, None, "NEW", "NEW"]
    assert july.unattributed is not None
    assert (july.unattributed.first_day, july.unattributed.last_day, july.unattributed.bars) == (
        D(2019, 7, 1),
        D(2019, 7, 3),
        2,
    )


def test_a_symbol_without_listings_is_one_derived_security():
    (unit,) = split_by_unit(raw_bars([D(2023, 3, 1)]), "ABC", [(D(2023, 3, 1), D(2023, 3, 31))], [])
    assert unit.bars.get_column("security_id").to_list() == ["PL:ABC"]
    assert unit.unattributed is None


# --- the ledger -------------------------------------------------------------------


def test_plan_records_listings_and_a_bare_ticker_keeps_them(tmp_path):
    with Ledger(tmp_path / "ledger.db") as ledger:
        rich = [
            Listing("ABC", None, D(2019, 6, 28), cik="1"),
            Listing("ABC", D(2021, 3, 1), composite_figi="BBGX"),
        ]
        plan(ledger, rich, "minute", D(2019, 1, 1), D(2021, 12, 31))
        stored = ledger.listings_of("ABC")
        assert [(i.first_day, i.last_day, i.security_id, i.link) for i in stored] == [
            (None, D(2019, 6, 28), "PL:ABC:cik1", "derived"),
            (D(2021, 3, 1), None, "BBGX", "composite_figi"),
        ]
        # the months between the two listings are not planned: neither company traded then
        months = [row.period for row in ledger.query("SELECT period FROM units ORDER BY period")]
        assert months == [f"2019-{m:02d}" for m in range(1, 7)] + [f"2021-{m:02d}" for m in range(3, 13)]
        plan(ledger, ["ABC"], "day", D(2019, 1, 1), D(2021, 12, 31))  # `--tickers`-style: says nothing new
        assert ledger.listings_of("ABC") == stored
        # nor does a row with a name and nothing else (`ticker,name`): the two companies stay
        # two (found by a review: they became one security over the gap between them)
        relisted = plan(ledger, [Listing("ABC", name="ABC Corp")], "day", D(2019, 1, 1), D(2021, 12, 31))
        assert ledger.listings_of("ABC") == stored and not relisted.relisted
        plan(ledger, ["NEW"], "day", D(2019, 1, 1), D(2019, 12, 31))
        assert [(i.ticker, i.security_id) for i in ledger.listings(tickers=["NEW"])] == [("NEW", "PL:NEW")]


def _settled(ledger: Ledger, states: str) -> dict[str, str]:
    """XYZ's 2020 months set to `states` (one letter a month: d done, e empty_confirmed),
    then each month's state."""
    with sqlite3.connect(ledger.path) as connection:
        for month, letter in enumerate(states, start=1):
            state = {"d": "done", "e": "empty_confirmed"}[letter]
            connection.execute("UPDATE units SET state = ? WHERE period = ?", (state, f"2020-{month:02d}"))
    return _months(ledger)


def _months(ledger: Ledger) -> dict[str, str]:
    return {row.period: row.state for row in ledger.query("SELECT period, state FROM units ORDER BY period")}


@pytest.mark.parametrize(
    ("listings", "queued"),
    [
        # delisted on 2020-08-14: only the bars after it change hands (to nobody); August
        # and September stay empty, explained the more
        ([Listing("XYZ", D(2020, 1, 1), D(2020, 8, 14), security_id="A")], ["2020-10", "2020-11", "2020-12"]),
        # another security from April: the done months from April on; the empty months'
        # days were inside a listing before and still are
        (
            [
                Listing("XYZ", D(2020, 1, 1), D(2020, 3, 31), security_id="A"),
                Listing("XYZ", D(2020, 4, 1), security_id="B"),
            ],
            ["2020-04", "2020-05", "2020-06", "2020-10", "2020-11", "2020-12"],
        ),
        # the same windows and security: nothing
        ([Listing("XYZ", D(2020, 1, 1), security_id="A")], []),
    ],
)
def test_a_listings_change_queues_again_only_the_done_units_over_days_that_changed_hands(
    tmp_path, listings, queued
):
    with Ledger(tmp_path / "ledger.db") as ledger:
        plan(
            ledger, [Listing("XYZ", D(2020, 1, 1), security_id="A")], "minute", D(2020, 1, 1), D(2020, 12, 31)
        )
        before = _settled(ledger, "ddddddeeeddd")
        replanned = plan(ledger, listings, "minute", D(2020, 1, 1), D(2020, 12, 31))
        after = _months(ledger)
    assert sorted(m for m in after if after[m] != before[m]) == queued
    assert all(after[m] == "pending" for m in queued) and replanned.relisted == len(queued)


def _narrowed_and_settled(ledger: Ledger) -> dict[str, str]:
    """XYZ's 2020 planned whole, its listing then narrowed to 2020-05-20..10-31, and its
    months settled: empty but May to August; the months' states."""
    plan(ledger, [Listing("XYZ", D(2020, 1, 1), security_id="A")], "minute", D(2020, 1, 1), D(2020, 12, 31))
    narrowed = [Listing("XYZ", D(2020, 5, 20), D(2020, 10, 31), security_id="A")]
    plan(ledger, narrowed, "minute", D(2020, 1, 1), D(2020, 12, 31))
    return _settled(ledger, "eeeeddddeeee")


def test_a_listings_change_queues_again_the_empty_units_over_days_newly_inside_a_listing(tmp_path):
    """An empty month outside every listing was settled on the windows' word (the group's
    answer may have been clipped by the plan's history): once a listing holds one of its
    days, it is asked again; an empty month the change leaves outside, or that was inside
    a listing already, is not."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        before = _narrowed_and_settled(ledger)
        # the listing starts earlier (2020-03-02, a Monday) and the symbol's next company is found
        corrected = [
            Listing("XYZ", D(2020, 3, 2), D(2020, 10, 31), security_id="A"),
            Listing("XYZ", D(2020, 12, 1), security_id="C"),
        ]
        replanned = plan(ledger, corrected, "minute", D(2020, 1, 1), D(2020, 12, 31))
        after = _months(ledger)
    changed = sorted(m for m in after if after[m] != before[m])
    # March and April (newly listed) and May (done, its days before the 20th now A's);
    # December, the new company's; not January or February (still before any listing),
    # nor September and October (empty inside a listing both times), nor November
    assert changed == ["2020-03", "2020-04", "2020-05", "2020-12"]
    assert replanned.relisted == 4


def test_a_plan_stopped_while_queueing_changed_units_leaves_the_old_listings(tmp_path, monkeypatch):
    """The new listings and the units they make wrong go back to pending in one transaction:
    a plan stopped between the two (killed, a lost connection) would leave the listings
    recorded, so the next plan would see no change and the units would never be asked again."""
    from polyledger.ledger.resets import Resets

    with Ledger(tmp_path / "ledger.db") as ledger:
        before = _narrowed_and_settled(ledger)
        corrected = [Listing("XYZ", D(2020, 3, 2), D(2020, 10, 31), security_id="A")]

        def killed(*args: object) -> int:
            raise KeyboardInterrupt

        with monkeypatch.context() as patched:
            patched.setattr(Resets, "_requeue_relisted", killed)
            with pytest.raises(KeyboardInterrupt):
                plan(ledger, corrected, "minute", D(2020, 1, 1), D(2020, 12, 31))
        assert _months(ledger) == before
        assert [(x.first_day, x.last_day) for x in ledger.listings_of("XYZ")] == [
            (D(2020, 5, 20), D(2020, 10, 31))
        ]
        replanned = plan(ledger, corrected, "minute", D(2020, 1, 1), D(2020, 12, 31))
        after = _months(ledger)
    assert sorted(m for m in after if after[m] != before[m]) == ["2020-03", "2020-04", "2020-05"]
    assert replanned.relisted == 3


def test_a_later_plan_cannot_give_a_held_security_to_another_symbol_at_once(tmp_path):
    """One security on one symbol at a time holds across plans too: an earlier plan's `FB`
    (open-ended) and a later universe's `META` with the same FIGI from the rename overlap
    (found by a review: both were accepted). Ending `FB`'s window in the same plan is the
    fix, and is accepted."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        plan(
            ledger,
            [Listing("FB", D(2012, 5, 18), composite_figi="BBGX")],
            "day",
            D(2020, 1, 1),
            D(2023, 12, 31),
        )
        meta = Listing("META", D(2022, 6, 9), composite_figi="BBGX")
        with pytest.raises(InputError, match="'BBGX' is on 'FB' .* and 'META' .* at once"):
            plan(ledger, [meta], "day", D(2020, 1, 1), D(2023, 12, 31))
        assert [item.ticker for item in ledger.listings(security_id="BBGX")] == ["FB"]
        renamed = Listing("FB", D(2012, 5, 18), D(2022, 6, 8), composite_figi="BBGX")
        plan(ledger, [renamed, meta], "day", D(2020, 1, 1), D(2023, 12, 31))
        assert [item.ticker for item in ledger.listings(security_id="BBGX")] == ["FB", "META"]


# --- ticker events ----------------------------------------------------------------


def test_ticker_events_as_the_api_documents_them():
    """The OpenAPI example of /vX/reference/tickers/META/events, decoded to one row per change."""
    from polyledger.datasets.ticker_events import events_frame

    results = {
        "events": [
            {"date": "2022-06-09", "ticker_change": {"ticker": "META"}, "type": "ticker_change"},
            {"date": "2012-05-18", "ticker_change": {"ticker": "FB"}, "type": "ticker_change"},
        ],
        "name": "Meta Platforms, Inc. Class A Common Stock",
    }
    frame = events_frame("META", [results])
    assert frame.sort("date").select("date", "symbol").rows() == [
        (D(2012, 5, 18), "FB"),
        (D(2022, 6, 9), "META"),
    ]
    assert set(frame.get_column("ticker")) == {"META"}
    # another kind of event, or one without a date, is not a symbol change
    odd = {
        "events": [
            {"date": "2020-01-02", "type": "other"},
            {"ticker_change": {"ticker": "X"}, "type": "ticker_change"},
        ]
    }
    assert events_frame("META", [odd]).height == 0

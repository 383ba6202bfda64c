"""Listings that change, and answers that hide a boundary: what the first review of the
listings work found (each test failed before its fix)."""

from __future__ import annotations

import datetime as dt
import warnings

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, STORED_COLUMNS, as_stored, read_dataset, run_cli, write_universe

import polyledger
from polyledger.errors import InputError
from polyledger.ledger import Ledger
from polyledger.listings import Listing, assign_security_ids
from polyledger.plan import plan_units
from polyledger.testing import StandInServer, SyntheticMarket, messy_listings
from polyledger.testing.market import et_midnight_ms
from polyledger.universe import read_members
from polyledger.universe_build import LIST_SCHEMA, UniverseReport, _link_renames

D = dt.date


def served(market: SyntheticMarket, ticker: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    bars = market.bars("minute", ticker, et_midnight_ms(first), et_midnight_ms(last + dt.timedelta(days=1)))
    return as_stored(bars, ticker)


def test_listings_that_change_after_bars_are_stored_queue_those_units_again(work):
    """Bare tickers first (one derived security each), then the universe's listings: the
    bars already stored carry the old id, so their units are fetched again."""
    market = SyntheticMarket(messy_listings(), seed=5)
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        (work / "bare.csv").write_text("ticker\nECHO\n", encoding="utf-8")
        window = ("--from", "2019-07-01", "--to", "2021-04-30")
        assert run_cli("plan", "--universe", "bare.csv", *window).code == 0
        assert run_cli("run", "--base-url", server.url, "--unadjusted").code == 0
        assert run_cli("universe", "--out", "u.csv", "--base-url", server.url).code == 0
        replanned = run_cli("plan", "--universe", "u.csv", *window)
        assert replanned.code == 0, replanned.err
        assert "units queued again: their symbol's listings changed" in replanned.out
        assert run_cli("run", "--base-url", server.url, "--unadjusted").code == 0
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        first, second = dl.listings(tickers=["ECHO"]).sort("first_day").get_column("security_id").to_list()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = dl.bars("minute", security=first).collect()
            b = dl.bars("minute", security=second).collect()
            stored = set(dl.bars("minute", tickers=["ECHO"]).collect().get_column("security_id"))
    assert_frame_equal(a.select(STORED_COLUMNS), served(market, "ECHO", D(2019, 7, 1), D(2019, 9, 18)))
    assert_frame_equal(b.select(STORED_COLUMNS), served(market, "ECHO", D(2021, 3, 1), D(2021, 4, 30)))
    assert stored == {first, second, None}  # PL:ECHO is gone from the files; the gap bars stay nobody's


def test_a_unit_straddling_the_plans_history_is_never_done_with_part_of_its_days(work):
    market = SyntheticMarket(messy_listings(), seed=5)
    server = StandInServer(market, api_keys=(API_KEY,), history_start=D(2020, 1, 15), straddle="clip")
    with server:
        (work / "u.csv").write_text("ticker\nABCPA\n", encoding="utf-8")
        assert run_cli("plan", "--universe", "u.csv", "--from", "2020-01-01", "--to", "2020-03-31").code == 0
        ran = run_cli("run", "--base-url", server.url)
        assert ran.code == 1, ran.out + ran.err
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        units = dl.units("minute").sort("period_start").select("period", "state", "error_class").rows()
    assert units == [
        ("2020-01", "failed", "not_entitled"),
        ("2020-02", "done", None),
        ("2020-03", "done", None),
    ]


def test_one_security_on_two_symbols_at_once_is_bad_input(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("ticker,security_id\nABCPA,MYCO\nBRK.A,MYCO\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_members(path)
    assert str(caught.value).startswith("u.csv: security_id 'MYCO' is on 'ABCPA'")
    # a rename: one after the other is fine
    path.write_text("ticker,security_id,last_date,first_date\nOLD,MYCO,2020-01-31,\nNEW,MYCO,,2020-02-03\n")
    assert [m.ticker for m in read_members(path)] == ["OLD", "NEW"]


def _row(ticker: str, **values: object) -> dict:
    row = dict.fromkeys(
        ("name", "primary_exchange", "type", "cik", "composite_figi", "share_class_figi", "delisted_utc"),
        None,
    )
    row.update(ticker=ticker, active=False, list_date=None, first_date=None, last_date=None, market_cap=None)
    row.update(security_id=None, link=None)
    row.update(values)
    return row


def _table(*rows: dict) -> pl.DataFrame:
    """Rows as `build_universe` holds them when it links renames: the list's columns, the
    details' dates and cap, the bounds polyledger set, and each listing's security."""
    extra = {
        "list_date": pl.Date(),
        "first_date": pl.Date(),
        "last_date": pl.Date(),
        "market_cap": pl.Float64(),
        "security_id": pl.String(),
        "link": pl.String(),
    }
    return pl.DataFrame(list(rows), schema={**LIST_SCHEMA, **extra})


def _events(
    asked: str, figi: str | None, cik: str | None, changes: list[tuple[dt.date, str]]
) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "ticker": asked,
                "name": "x",
                "composite_figi": figi,
                "cik": cik,
                "date": day,
                "event_type": "ticker_change",
                "symbol": symbol,
            }
            for day, symbol in changes
        ]
    )


HOLDER = _row(
    "NEW",
    active=True,
    composite_figi="BBGNEW",
    cik="1",
    list_date=D(2010, 1, 4),
    security_id="BBGNEW",
    link="composite_figi",
)


def test_an_events_answer_about_another_company_is_left_out_and_reported():
    report = UniverseReport()
    events = _events("BBGNEW", "BBGOTHER", "1", [(D(2015, 1, 2), "OLD"), (D(2020, 1, 2), "NEW")])
    table = _link_renames(_table(HOLDER), events, report)
    assert table.get_column("ticker").to_list() == ["NEW"]
    assert report.skipped_events == ["NEW: events answered for composite_figi BBGOTHER, not this company"]


def test_an_earlier_symbol_the_lists_hold_without_figi_is_linked_not_added_twice():
    listed_old = _row("OLD", cik="1", delisted_utc=None, security_id="PL:OLD:cik1", link="derived")
    report = UniverseReport()
    events = _events("BBGNEW", "BBGNEW", "1", [(D(2015, 1, 2), "OLD"), (D(2020, 1, 2), "NEW")])
    table = _link_renames(_table(HOLDER, listed_old), events, report)
    rows = {row["ticker"]: row for row in table.iter_rows(named=True)}
    assert table.height == 2 and report.renamed == [("OLD", "NEW")]
    assert (rows["OLD"]["security_id"], rows["OLD"]["link"]) == ("BBGNEW", "ticker_event")
    assert (rows["OLD"]["first_date"], rows["OLD"]["last_date"]) == (D(2015, 1, 2), D(2020, 1, 1))
    assert rows["NEW"]["first_date"] == D(2020, 1, 2)  # the holder starts at its own symbol
    members = read_members_of(table)
    assert [m.security_id for m in members] == ["BBGNEW", "BBGNEW"]


def read_members_of(table: pl.DataFrame) -> list[Listing]:
    return assign_security_ids(
        [
            Listing(
                row["ticker"],
                first_day=max((d for d in (row["list_date"], row["first_date"]) if d), default=None),
                last_day=row["last_date"],
                security_id=row["security_id"],
                link=row["link"],
            )
            for row in table.iter_rows(named=True)
        ]
    )


# --- a change of symbol placed by the trading around it (its event's date is a few days off) ---


def _traded(first: dt.date, last: dt.date, price: float) -> list[dict]:
    """Day bars on the weekdays of [first, last], around `price`."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [{"day": d, "open": price, "close": price * 1.01} for d in days if d.weekday() < 5]


def _renamed(event_day: dt.date, old_bars: list[dict] | None, new_bars: list[dict] | None, unread=None):
    """HOLDER's events, OLD (2015) -> NEW (`event_day`), with the trading the events unit
    read around the change (None: not read, `unread` saying why)."""
    from polyledger.datasets.ticker_events import SCHEMA

    events = _events("BBGNEW", "BBGNEW", "1", [(D(2015, 1, 2), "OLD"), (event_day, "NEW")])
    trading = pl.DataFrame(
        {
            "previous_symbol": [None, "OLD"],
            "previous_bars": [None, old_bars],
            "bars": [None, new_bars],
            "trading_unread": [None, unread],
        },
        schema={k: SCHEMA[k] for k in ("previous_symbol", "previous_bars", "bars", "trading_unread")},
    )
    return pl.concat([events, trading], how="horizontal")


def _windows(table: pl.DataFrame) -> list[tuple]:
    return sorted(
        (row["ticker"], max(d for d in (row["list_date"], row["first_date"]) if d), row["last_date"])
        for row in table.iter_rows(named=True)
    )


@pytest.mark.parametrize(
    ("event_day", "placed"),
    [
        (D(2022, 6, 11), True),  # late, on a Saturday: the recorded FB -> META answer
        (D(2022, 6, 6), True),  # early: OLD still traded until the 8th
        (D(2022, 6, 9), False),  # where the trading puts it: nothing to say
    ],
)
def test_a_change_of_symbol_is_placed_where_the_trading_shows_it(event_day, placed):
    """OLD's last bar 2022-06-08, NEW's first after it 06-09 at a price continuing OLD's
    (a former holder of NEW traded it until 06-01, at another price): the windows meet on
    06-09 whatever day the event says, within a week of it."""
    old = _traded(D(2022, 6, 1), D(2022, 6, 8), 100.0)
    new = _traded(D(2022, 5, 30), D(2022, 6, 1), 12.0) + _traded(D(2022, 6, 9), D(2022, 6, 17), 101.0)
    window = (event_day - dt.timedelta(days=7), event_day + dt.timedelta(days=7))
    report = UniverseReport()
    table = _link_renames(
        _table(HOLDER),
        _renamed(
            event_day,
            [b for b in old if window[0] <= b["day"] <= window[1]],
            [b for b in new if window[0] <= b["day"] <= window[1]],
        ),
        report,
    )
    assert _windows(table) == [("NEW", D(2022, 6, 9), None), ("OLD", D(2015, 1, 2), D(2022, 6, 8))]
    assert report.unconfirmed_changes == []
    assert len(report.placed_by_trading) == int(placed)
    if placed:
        assert report.placed_by_trading[0].startswith(
            f"OLD -> NEW: the ticker event says {event_day}, the trading 2022-06-09 (OLD last traded "
            "2022-06-08, NEW from 2022-06-09)"
        )


@pytest.mark.parametrize(
    ("old_bars", "new_bars", "unread", "why"),
    [
        # a former holder of NEW still trading right after OLD's last bar, at its own price
        (
            _traded(D(2022, 6, 6), D(2022, 6, 8), 100.0),
            _traded(D(2022, 6, 6), D(2022, 6, 10), 12.0) + _traded(D(2022, 6, 13), D(2022, 6, 17), 101.0),
            None,
            "NEW's first price after OLD's last bar (12.0 on 2022-06-09) does not continue OLD's (101.0",
        ),
        # OLD taken at once by another company: both symbols traded after the event's date
        (
            _traded(D(2022, 6, 6), D(2022, 6, 8), 100.0) + _traded(D(2022, 6, 14), D(2022, 6, 15), 30.0),
            _traded(D(2022, 6, 9), D(2022, 6, 17), 101.0),
            None,
            "OLD and NEW both traded between 2022-06-11 and 2022-06-15",
        ),
        ([], _traded(D(2022, 6, 9), D(2022, 6, 17), 101.0), None, "OLD did not trade within 7 days of it"),
        (
            _traded(D(2022, 6, 6), D(2022, 6, 8), 100.0),
            [],
            None,
            "NEW did not trade after OLD's last bar (2022-06-08) within 7 days",
        ),
        (None, None, "not_entitled: Your plan doesn't include this data timeframe.", "its trading could not"),
    ],
)
def test_a_change_the_trading_does_not_show_cleanly_keeps_its_date_and_is_reported(
    old_bars, new_bars, unread, why
):
    """Never a guess: when the trading does not show one clean handover from OLD to NEW
    (the same company's price), the windows meet at the event's date as before, and the
    universe says the change is unconfirmed and why."""
    report = UniverseReport()
    table = _link_renames(_table(HOLDER), _renamed(D(2022, 6, 11), old_bars, new_bars, unread), report)
    assert _windows(table) == [("NEW", D(2022, 6, 11), None), ("OLD", D(2015, 1, 2), D(2022, 6, 10))]
    assert report.placed_by_trading == []
    (line,) = report.unconfirmed_changes
    assert line.startswith("OLD -> NEW on 2022-06-11 (the event's date, kept): ") and why in line, line


def test_two_symbols_starting_on_one_day_are_reported_not_guessed():
    report = UniverseReport()
    events = _events(
        "BBGNEW", "BBGNEW", "1", [(D(2015, 1, 2), "OLD"), (D(2015, 1, 2), "OLDB"), (D(2020, 1, 2), "NEW")]
    )
    table = _link_renames(_table(HOLDER), events, report)
    assert table.get_column("ticker").to_list() == ["NEW"]
    assert len(report.skipped_events) == 2 and all(
        "no single later symbol" in s for s in report.skipped_events
    )


@pytest.mark.parametrize("t_ipo", [D(2009, 6, 1), D(2015, 1, 2)])
def test_a_symbol_given_up_and_renamed_into_keeps_both_companies_windows(t_ipo):
    """G traded as SYM, then GNEW; T listed as TOLD, then took SYM. G's earlier SYM is
    kept whichever company's events come first (T's IPO before or after G's)."""
    g = _row("GNEW", active=True, composite_figi="BBGG", cik="1", list_date=D(2010, 1, 4), security_id="BBGG")
    t = _row("SYM", active=True, composite_figi="BBGT", cik="2", list_date=t_ipo, security_id="BBGT")
    events = pl.concat(
        [
            _events("BBGG", "BBGG", "1", [(D(2010, 1, 4), "SYM"), (D(2020, 1, 2), "GNEW")]),
            _events("BBGT", "BBGT", "2", [(t_ipo, "TOLD"), (D(2021, 1, 4), "SYM")]),
        ]
    )
    report = UniverseReport()
    table = _link_renames(_table(g, t), events, report)
    windows = table.select("ticker", "first_date", "last_date", "security_id").sort("ticker", "first_date")
    assert windows.rows() == [
        ("GNEW", D(2020, 1, 2), None, "BBGG"),
        ("SYM", D(2010, 1, 4), D(2020, 1, 1), "BBGG"),
        ("SYM", D(2021, 1, 4), None, "BBGT"),
        ("TOLD", t_ipo, D(2021, 1, 3), "BBGT"),
    ]
    assert report.skipped_events == []


@pytest.mark.parametrize("order", ["a-first", "b-first"])
def test_an_old_symbol_two_companies_events_claim_at_once_is_given_to_neither(order):
    """A and B both say they traded as OLD in 2012-2014 (the provider's events disagree):
    both windows cannot hold, and which one is right is not ours to guess, whatever order
    the companies come in: neither is added, both are reported; their own symbols stay."""
    a = _row("ANEW", active=True, composite_figi="BBGA", cik="1", list_date=D(2010, 1, 4), security_id="BBGA")
    b = _row("BNEW", active=True, composite_figi="BBGB", cik="2", list_date=D(2011, 1, 3), security_id="BBGB")
    events = {
        "a": _events("BBGA", "BBGA", "1", [(D(2012, 1, 3), "OLD"), (D(2015, 1, 2), "ANEW")]),
        "b": _events("BBGB", "BBGB", "2", [(D(2013, 1, 2), "OLD"), (D(2016, 1, 4), "BNEW")]),
    }
    first, second = ("a", "b") if order == "a-first" else ("b", "a")
    report = UniverseReport()
    table = _link_renames(_table(a, b), pl.concat([events[first], events[second]]), report)
    assert sorted(table.get_column("ticker").to_list()) == ["ANEW", "BNEW"]
    assert sum("OLD" in line and "another company's events" in line for line in report.skipped_events) == 2
    assert report.renamed == []


def test_planned_units_are_the_same_whatever_the_order_of_a_symbols_rows():
    rows = [Listing("X", D(2021, 3, 1), None), Listing("X", None, D(2019, 9, 18))]
    forward = {u.period for u in plan_units(rows, "minute", D(2019, 1, 1), D(2021, 12, 31))}
    backward = {u.period for u in plan_units(rows[::-1], "minute", D(2019, 1, 1), D(2021, 12, 31))}
    assert forward == backward and len(forward) == 9 + 10


def test_one_security_reads_in_time_order_whatever_its_symbols_are_called(work):
    """A rename to a symbol that sorts earlier (ZOLD -> ANEW): one company's bars in time order."""
    market = SyntheticMarket(
        [market_listing("ZOLD", delist=D(2020, 1, 31)), market_listing("ANEW", listed=D(2020, 2, 3))], seed=3
    )
    (work / "u.csv").write_text(
        "ticker,security_id,delisted_utc,list_date\nZOLD,CO1,2020-01-31,\nANEW,CO1,,2020-02-03\n",
        encoding="utf-8",
    )
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("plan", "--universe", "u.csv", "--from", "2020-01-01", "--to", "2020-02-29").code == 0
        assert run_cli("run", "--base-url", server.url).code == 0
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        bars = dl.bars("minute", security="CO1").collect()
    assert bars.get_column("ticker").unique(maintain_order=True).to_list() == ["ZOLD", "ANEW"]
    assert bars.get_column("timestamp").is_sorted()


def market_listing(ticker: str, listed: dt.date | None = None, delist: dt.date | None = None):
    from polyledger.testing import Listing as MarketListing

    return MarketListing(ticker, list_date=listed, delist_date=delist, bars_per_day=5)


# --- months confirmed empty on listings that later change (found by a review: they stayed
# `empty_confirmed` for ever, a hole no retry reaches) ----------------------------------------


def _states(work) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        units = dl.units("minute").sort("period_start").select("period", "state", "error_class").rows()
    return {period: (state, error_class) for period, state, error_class in units}


def _run(server: StandInServer) -> int:
    """One worker: a ticker's pending months are one group, so what a run settles on the
    group's answer is the same every time."""
    ran = run_cli("run", "--base-url", server.url, "--unadjusted", "--workers", "1")
    assert ran.code in (0, 1), ran.out + ran.err
    return ran.code


def _fetch_after_an_upgrade(server: StandInServer) -> None:
    """The plan's history reaches back to the first bar (an upgrade): the months that failed
    as not entitled are asked again."""
    server.history_start = None
    assert run_cli("retry", "--class", "not_entitled").code == 0
    assert _run(server) == 0


def test_months_a_narrower_listing_explained_empty_are_asked_again_when_it_widens(work):
    """WIDE trades throughout; the plan's history starts 2020-04-01 and a straddling range
    comes back clipped. Planned from the bare ticker, then a universe says WIDE was listed
    on 2020-04-15: January-March, before the group's first bar and outside every listing,
    are settled empty on the clipped answer's word. The universe is corrected (listed in
    2019): those months must not stay empty, they lie inside the listing now."""
    market = SyntheticMarket([market_listing("WIDE")], seed=3)
    window = ("--from", "2020-01-01", "--to", "2020-06-30")
    server = StandInServer(market, api_keys=(API_KEY,), history_start=D(2020, 4, 1), straddle="clip")
    with server:
        (work / "bare.csv").write_text("ticker\nWIDE\n", encoding="utf-8")
        (work / "narrow.csv").write_text(
            "ticker,security_id,list_date\nWIDE,CO1,2020-04-15\n", encoding="utf-8"
        )
        (work / "wide.csv").write_text(
            "ticker,security_id,list_date\nWIDE,CO1,2019-06-03\n", encoding="utf-8"
        )
        assert run_cli("plan", "--universe", "bare.csv", *window).code == 0
        assert run_cli("plan", "--universe", "narrow.csv", *window).code == 0
        assert _run(server) == 0
        before = _states(work)
        assert [before[p][0] for p in ("2020-01", "2020-02", "2020-03")] == ["empty_confirmed"] * 3
        replanned = run_cli("plan", "--universe", "wide.csv", *window)
        assert replanned.code == 0, replanned.err
        # the three empty months, and April (its days before the 15th belonged to nobody);
        # May and June keep their bars: no day of theirs changed hands
        assert "4 units queued again: their symbol's listings changed" in replanned.out, replanned.out
        assert _run(server) == 1  # failed units: the months before the history
        after = _states(work)
        assert [after[p] for p in ("2020-01", "2020-02", "2020-03")] == [("failed", "not_entitled")] * 3
        _fetch_after_an_upgrade(server)
    assert set(_states(work).values()) == {("done", None)}
    assert_frame_equal(
        read_dataset(work / "data", "minute"), served(market, "WIDE", D(2020, 1, 1), D(2020, 6, 30))
    )


def test_a_month_a_listings_first_day_explained_empty_is_asked_again_when_the_symbol_gets_another(work):
    """REUS is one company until 2023-03-10, an unrelated one from 2023-04-03 (its list date
    says 2023-03-27); the plan's history starts 2023-03-15 and March's answer is clipped to
    nothing. Knowing only the second company, March's days before the 27th are explained
    (nobody listed) and March is confirmed empty. The universe then finds the first
    company: March's first days are inside a listing now, and March must be asked again."""
    market = SyntheticMarket(
        [
            market_listing("REUS", delist=D(2023, 3, 10)),
            market_listing("REUS", listed=D(2023, 4, 3)),
        ],
        seed=11,
    )
    window = ("--from", "2023-01-01", "--to", "2023-04-30")
    server = StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 3, 15), straddle="clip")
    with server:
        (work / "one.csv").write_text("ticker,security_id,list_date\nREUS,NEW,2023-03-27\n", encoding="utf-8")
        (work / "both.csv").write_text(
            "ticker,security_id,list_date,delisted_utc\n"
            "REUS,OLD,,2023-03-10T00:00:00Z\nREUS,NEW,2023-03-27,\n",
            encoding="utf-8",
        )
        assert run_cli("plan", "--universe", "one.csv", *window).code == 0
        assert _run(server) == 0
        assert _states(work) == {"2023-03": ("empty_confirmed", None), "2023-04": ("done", None)}
        replanned = run_cli("plan", "--universe", "both.csv", *window)
        assert replanned.code == 0, replanned.err
        # January and February are new units (the first company's); March is queued again;
        # April's bars all stay the second company's
        assert "2 new" in replanned.out and "1 unit queued again" in replanned.out, replanned.out
        assert _run(server) == 1
        assert _states(work)["2023-03"] == ("failed", "not_entitled")  # its first day alone: a 403
        _fetch_after_an_upgrade(server)
    assert set(_states(work).values()) == {("done", None)}
    assert_frame_equal(
        read_dataset(work / "data", "minute"), served(market, "REUS", D(2023, 1, 1), D(2023, 4, 30))
    )
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        old = dl.bars("minute", security="OLD").collect()
    assert_frame_equal(old.select(STORED_COLUMNS), served(market, "REUS", D(2023, 1, 1), D(2023, 3, 10)))


def test_a_plan_that_changes_a_symbols_security_while_a_run_holds_its_unit_takes_it_back(
    work, server, monkeypatch
):
    """docs/listings.md: "a stored `security_id` always matches the ledger's listings". A
    plan made while a run holds one of the units over the days it changes (another
    terminal, another host, `sync`) takes that unit back from its worker, whose settle
    then finds its lease gone: the unit is fetched again with the new listing, never left
    `done` with the old security_id (found by a review: a plan queued only settled units
    again). Deterministic: the plan is made at the worker's settle."""
    from polyledger.plan import plan

    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-03-01", "--to", "2023-03-31").code == 0
    figi = "BBG000B9XRY4"
    original = Ledger.settle_fetched
    planned: list[int] = []

    def settle_after_a_plan(self, fetched, adjusted, run_id=None):  # type: ignore[no-untyped-def]
        if not planned:
            with Ledger(work / "ledger.db") as other:  # `plan` from another terminal
                march = (dt.date(2023, 3, 1), dt.date(2023, 3, 31))
                planned.append(plan(other, [Listing("AAPL", composite_figi=figi)], "minute", *march).relisted)
        return original(self, fetched, adjusted, run_id)

    monkeypatch.setattr(Ledger, "settle_fetched", settle_after_a_plan)
    first = run_cli("run", "--base-url", server.url, "--workers", "1", "--rate", "2000")
    monkeypatch.setattr(Ledger, "settle_fetched", original)
    assert planned == [1], first.out + first.err  # the running unit, taken back
    assert first.code == 0, first.out + first.err  # the run claimed it again and fetched it afresh
    with Ledger(work / "ledger.db") as opened:
        unit = opened.query("SELECT id, state, file_path FROM units WHERE ticker = 'AAPL'")[0]
    assert unit.state == "done" and server.stats.bars_requests == 2, first.out  # asked again
    with Ledger(work / "ledger.db") as opened:  # every attempt a row, the one taken back too
        attempts = opened.query(
            "SELECT a.outcome, a.error_class, a.run_id = r.id AS of_the_run FROM unit_attempts a "
            "JOIN runs r ON r.id = (SELECT id FROM runs ORDER BY started_at DESC LIMIT 1) ORDER BY a.id"
        )
        runs = opened.query("SELECT outcome FROM runs")
    assert [(a.outcome, a.error_class, bool(a.of_the_run)) for a in attempts] == [
        ("pending", "relisted", True),
        ("done", None, True),
    ]
    assert [run.outcome for run in runs] == ["finished"]  # the run was not taken for dead
    assert pl.read_parquet(work / "data" / unit.file_path)["security_id"].unique().to_list() == [figi]
    assert run_cli("audit").code == 0

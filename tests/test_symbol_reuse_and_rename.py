"""A symbol renamed away and taken by another company at once (polygon-api.md's META:
the Roundhill ETF traded as META until Facebook took it): the first holder's history
under the symbol stays one of its listings, whoever took the symbol and however late
the events date the two changes."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from support import API_KEY, run_cli

from polyledger.ledger import Ledger
from polyledger.testing import StandInServer, SyntheticMarket
from polyledger.testing.market import Listing as MarketListing
from polyledger.universe import read_members
from polyledger.universe_build import LIST_SCHEMA, UniverseReport, _link_renames

D = dt.date
EVENT = D(2022, 6, 11)  # both changes, a Saturday, as the recorded FB -> META answer


def _swap_market(etf_renamed_on: dt.date = D(2022, 6, 9)) -> SyntheticMarket:
    """An ETF traded as XMET from 2021-06-01 until 2022-06-08 and renamed itself XMETV
    (trading as XMETV from `etf_renamed_on`); on 2022-06-09 a company that had traded as
    FBK took XMET. Both ticker events are dated 2022-06-11."""
    return SyntheticMarket(
        [
            MarketListing(
                "XMET",
                list_date=D(2021, 6, 1),
                delist_date=D(2022, 6, 8),
                company="etf",
                renamed=True,
                name="Metaverse ETF",
                bars_per_day=5,
            ),
            MarketListing(
                "XMETV",
                list_date=etf_renamed_on,
                company="etf",
                event_date=EVENT,
                name="Metaverse ETF",
                bars_per_day=5,
            ),
            MarketListing(
                "FBK",
                list_date=D(2019, 1, 2),
                delist_date=D(2022, 6, 8),
                company="facebook",
                renamed=True,
                bars_per_day=5,
            ),
            MarketListing(
                "XMET", list_date=D(2022, 6, 9), company="facebook", event_date=EVENT, bars_per_day=5
            ),
        ],
        seed=3,
    )


def _universe(market: SyntheticMarket) -> tuple[str, list]:
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        built = run_cli("universe", "--out", "u.csv", "--base-url", server.url, "--date", "2023-06-30")
    assert built.code == 0, built.out + built.err
    return built.out, read_members("u.csv")


def _windows(members: list, security_of: str) -> list[tuple]:
    (current,) = [m for m in members if m.ticker == security_of]
    return sorted(
        (m.ticker, m.first_day, m.last_day) for m in members if m.security_id == current.security_id
    )


def test_an_etf_that_gave_up_its_symbol_the_day_another_company_took_it_keeps_its_history(work):
    """The ETF's change XMET -> XMETV is placed on its own trading, not on the other
    company's bars under XMET from 06-09 (the code before took the last of them as the
    ETF's last XMET session, kept the change at 06-11, and then dropped the ETF's whole
    XMET window for colliding with the other company's: a year of history in no listing,
    never planned). The windows meet on 06-09, and XMET's months are planned."""
    said, members = _universe(_swap_market())
    assert _windows(members, "XMETV") == [
        ("XMET", D(2021, 6, 1), D(2022, 6, 8)),
        ("XMETV", D(2022, 6, 9), None),
    ], said
    assert _windows(members, "FBK") == [("FBK", D(2019, 1, 2), D(2022, 6, 8)), ("XMET", D(2022, 6, 9), None)]
    assert "XMET's bars from 2022-06-09 are another company's" in said
    planned = run_cli(
        "plan", "--universe", "u.csv", "--dataset", "minute", "--from", "2021-06-01", "--to", "2022-06-30"
    )
    assert planned.code == 0, planned.out + planned.err
    with Ledger(work / "ledger.db") as ledger:
        months = {
            str(r.period_start)
            for r in ledger.query(
                "SELECT period_start FROM units WHERE ticker = 'XMET' AND dataset = 'minute'"
            )
        }
    assert {"2021-06-01", "2022-01-01", "2022-06-01"} <= months


def test_an_earlier_window_running_into_another_companys_listing_is_shortened_not_dropped(work):
    """XMETV first trades on 06-20, beyond a week of the event: the ETF's change cannot be
    confirmed and stays at 06-11, while the other company's XMET starts on 06-09. The
    ETF's XMET window ends the day before (06-08), and `universe` says so; the code
    before dropped the whole window ("the lists give that symbol to another company")."""
    said, members = _universe(_swap_market(etf_renamed_on=D(2022, 6, 20)))
    assert _windows(members, "XMETV") == [
        ("XMET", D(2021, 6, 1), D(2022, 6, 8)),
        ("XMETV", D(2022, 6, 20), None),  # its list date, after the event's
    ], said
    assert "change of symbol not confirmed by trading: XMET -> XMETV on 2022-06-11" in said
    assert (
        "earlier symbol's window shortened: XMET (2021-06-01 to 2022-06-10) -> XMETV: ends 2022-06-08, "
        "the day before another company's XMET starts (2022-06-09, by the listing)" in said
    ), said
    assert "ticker event left out" not in said


# --- the same, from the rows `build_universe` holds when it links renames ---------------------


def _traded(first: dt.date, last: dt.date, price: float) -> list[dict]:
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [{"day": d, "open": price, "close": price} for d in days if d.weekday() < 5]


def _row(ticker: str, figi: str, cik: str, list_date: dt.date) -> dict:
    row = dict.fromkeys(LIST_SCHEMA)
    row.update(ticker=ticker, active=True, composite_figi=figi, cik=cik, list_date=list_date)
    row.update(first_date=None, last_date=None, market_cap=None, security_id=figi, link="composite_figi")
    return row


def _table(*rows: dict) -> pl.DataFrame:
    extra = {
        "list_date": pl.Date(),
        "first_date": pl.Date(),
        "last_date": pl.Date(),
        "market_cap": pl.Float64(),
    }
    schema = {**LIST_SCHEMA, **extra, "security_id": pl.String(), "link": pl.String()}
    return pl.DataFrame(list(rows), schema=schema)


def _events(figi: str, cik: str, first: tuple[dt.date, str], change: tuple[str, list, list]) -> pl.DataFrame:
    """A company's events: its first symbol, then one change on EVENT, with the day bars
    the events unit read around it (`previous_symbol`, `previous_bars`, `bars`)."""
    from polyledger.datasets.ticker_events import SCHEMA

    (first_day, first_symbol), (symbol, previous_bars, bars) = first, change
    rows = [(first_day, first_symbol, None, None, None), (EVENT, symbol, first_symbol, previous_bars, bars)]
    return pl.DataFrame(
        [
            {
                "ticker": figi,
                "name": "x",
                "composite_figi": figi,
                "cik": cik,
                "date": day,
                "event_type": "ticker_change",
                "symbol": sym,
                "previous_symbol": previous,
                "previous_bars": old,
                "bars": new,
                "trading_unread": None,
            }
            for day, sym, previous, old, new in rows
        ],
        schema={
            **{k: v for k, v in SCHEMA.items() if k in ("ticker", "name", "composite_figi", "cik")},
            "date": pl.Date(),
            "event_type": pl.String(),
            "symbol": pl.String(),
            **{k: SCHEMA[k] for k in ("previous_symbol", "previous_bars", "bars", "trading_unread")},
        },
    )


def _link(table: pl.DataFrame, *events: pl.DataFrame) -> tuple[list[tuple], UniverseReport]:
    report = UniverseReport()
    linked = _link_renames(table, pl.concat(list(events)), report)
    windows = sorted(
        (row["ticker"], row["security_id"], row["first_date"] or row["list_date"], row["last_date"])
        for row in linked.iter_rows(named=True)
    )
    return windows, report


ETF = _row("XMETV", "BBGETF", "1", D(2021, 6, 1))
ETF_BARS = _traded(D(2022, 6, 6), D(2022, 6, 8), 100.0)
ETF_RENAMED = _traded(D(2022, 6, 9), D(2022, 6, 17), 100.0)


@pytest.mark.parametrize("etf_first", [True, False])
def test_the_old_symbols_bars_from_the_takers_placed_start_are_not_the_renamed_companys(etf_first):
    """The company that took XMET trades at the ETF's price (no break to tell them apart):
    its start on XMET, placed by its own change FBK -> XMET (06-09), ends the ETF's
    trading under XMET, whichever company's events come first."""
    taker = _row("XMET", "BBGFB", "2", D(2019, 1, 2))
    taker_bars = _traded(D(2022, 6, 9), D(2022, 6, 17), 100.5)
    etf = _events("BBGETF", "1", (D(2021, 6, 1), "XMET"), ("XMETV", ETF_BARS + taker_bars, ETF_RENAMED))
    fb = _events(
        "BBGFB",
        "2",
        (D(2019, 1, 2), "FBK"),
        ("XMET", _traded(D(2022, 6, 6), D(2022, 6, 8), 100.5), taker_bars),
    )
    windows, report = _link(_table(ETF, taker), *((etf, fb) if etf_first else (fb, etf)))
    assert windows == [
        ("FBK", "BBGFB", D(2019, 1, 2), D(2022, 6, 8)),
        ("XMET", "BBGETF", D(2021, 6, 1), D(2022, 6, 8)),
        ("XMET", "BBGFB", D(2022, 6, 9), None),
        ("XMETV", "BBGETF", D(2022, 6, 9), None),
    ]
    assert report.unconfirmed_changes == [] and report.skipped_events == [] and report.shortened == []


def test_an_old_symbol_taken_at_once_by_a_company_outside_the_universe_is_told_by_its_price():
    """The taker is not in the universe (another type, say): XMET's price breaks off on
    06-09, the session XMETV opens continuing it. The code before read the taker's bars
    as the ETF's and kept the change at 06-11, giving the ETF the taker's 06-09 and 06-10."""
    taker_bars = _traded(D(2022, 6, 9), D(2022, 6, 17), 30.0)
    etf = _events("BBGETF", "1", (D(2021, 6, 1), "XMET"), ("XMETV", ETF_BARS + taker_bars, ETF_RENAMED))
    windows, report = _link(_table(ETF), etf)
    assert windows == [
        ("XMET", "BBGETF", D(2021, 6, 1), D(2022, 6, 8)),
        ("XMETV", "BBGETF", D(2022, 6, 9), None),
    ]
    (line,) = report.placed_by_trading
    assert "XMET's bars from 2022-06-09 are another company's" in line


def test_two_companies_event_windows_a_few_days_apart_meet_where_the_later_starts():
    """The taker later renamed XMET -> FBNEW, so its XMET window is an earlier symbol too.
    The ETF's change cannot be confirmed (XMETV's trading unread) and stays at 06-11; the
    taker's start is 06-09: two days' overlap is an event's date a few days off, not the
    provider's answers disagreeing, so the ETF's window ends 06-08 (reported) rather than
    both being dropped, as the code before did."""
    taker = _row("FBNEW", "BBGFB", "2", D(2019, 1, 2))
    etf = _events("BBGETF", "1", (D(2021, 6, 1), "XMET"), ("XMETV", None, None))
    fb = _events(
        "BBGFB",
        "2",
        (D(2019, 1, 2), "FBK"),
        ("XMET", _traded(D(2022, 6, 6), D(2022, 6, 8), 100.5), _traded(D(2022, 6, 9), D(2022, 6, 17), 100.5)),
    )
    fb = pl.concat([fb, fb.tail(1).with_columns(date=pl.lit(D(2023, 3, 1)), symbol=pl.lit("FBNEW"))])
    windows, report = _link(_table(ETF, taker), etf, fb)
    assert windows == [
        ("FBK", "BBGFB", D(2019, 1, 2), D(2022, 6, 8)),
        ("FBNEW", "BBGFB", D(2023, 3, 1), None),
        ("XMET", "BBGETF", D(2021, 6, 1), D(2022, 6, 8)),
        ("XMET", "BBGFB", D(2022, 6, 9), D(2023, 2, 28)),
        ("XMETV", "BBGETF", D(2022, 6, 11), None),
    ]
    (line,) = report.shortened
    assert line.startswith("XMET (2021-06-01 to 2022-06-10) -> XMETV: ends 2022-06-08")
    assert report.skipped_events == []

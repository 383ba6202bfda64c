"""`audit --quality`'s grouped cross-check and `retry --flagged` on its flags: a session a
symbol traded over the counter is no hole in the grouped bars (they leave OTC securities
out unless asked), and a flag of the grouped bars, which names the symbol while its unit is
the market's day, is retried by that symbol (both found by a review)."""

from __future__ import annotations

import datetime as dt

import polars as pl
from support import run_cli

from polyledger.ledger import AttemptRecord, Ledger, PlannedUnit
from polyledger.storage import BarStore

D = dt.date


def stored_bars(ticker: str, days: list[dt.date], volume: float = 1000.0) -> pl.DataFrame:
    from polyledger.testing.market import et_midnight_ms

    times = [et_midnight_ms(day) for day in days]
    n = len(times)
    return pl.DataFrame(
        {
            "ticker": [ticker] * n,
            "timestamp": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "open": [10.0] * n,
            "high": [10.1] * n,
            "low": [9.9] * n,
            "close": [10.0] * n,
            "volume": [volume] * n,
            "vwap": [10.0] * n,
            "transactions": [3] * n,
            "otc": pl.Series([None] * n, dtype=pl.Boolean),
        }
    )


def add_done(ledger: Ledger, store: BarStore, dataset: str, ticker: str, start, end, bars, name=None) -> int:
    ledger.add_units([PlannedUnit(dataset, ticker, start, end, period_name=name)])
    (unit,) = ledger.claim("test", 60)
    ledger.settle_done(
        unit, store.write_unit(dataset, ticker, start, bars), True, AttemptRecord(bars=bars.height)
    )
    return unit.id


def test_retry_flagged_of_a_ticker_queues_the_grouped_unit_its_flag_names(work):
    """commands.md (retry --flagged): "`--ticker` and `--dataset` narrow it" the settled
    units `audit --quality` flagged. audit --quality flags AAPL's session missing from
    the grouped daily bars (`missing_in_grouped`, dataset grouped_daily, ticker AAPL,
    unit = that day's grouped unit). `retry --flagged --ticker AAPL` says "0 flagged
    units are pending again", and adding `--dataset grouped_daily` is refused ("the
    ledger has no grouped_daily units of AAPL", exit 2): --ticker is matched against the
    *unit's* ticker (the grouped unit's is the market's), never the flag's
    (polyledger/ledger/resets.py:73-80 and :265-276; polyledger/requeue.py:63), so the
    flag the audit printed for AAPL cannot be retried by its ticker."""
    from polyledger.checks.quality import check_quality
    from polyledger.datasets import MARKET

    day = D(2024, 3, 5)
    with Ledger(work / "ledger.db") as opened:
        store = BarStore(work / "data")
        add_done(opened, store, "day", "AAPL", D(2024, 1, 1), D(2024, 12, 31), stored_bars("AAPL", [day]))
        grouped = stored_bars("MSFT", [day])  # the day's grouped bars lack AAPL
        add_done(opened, store, "grouped_daily", MARKET, day, day, grouped, name=day.isoformat())
        add_done(opened, store, "day", "MSFT", D(2024, 1, 1), D(2024, 12, 31), stored_bars("MSFT", [day]))
        check_quality(opened, store)
        flags = [tuple(r) for r in opened.query("SELECT dataset, ticker, check_name FROM quality_flags")]
    assert flags == [("grouped_daily", "AAPL", "missing_in_grouped")]
    narrowed = run_cli("retry", "--flagged", "--ticker", "AAPL", "--dataset", "grouped_daily")
    assert narrowed.code == 0, narrowed.err
    assert narrowed.out.startswith("1 flagged units are pending again")
    by_ticker = run_cli("retry", "--flagged", "--ticker", "AAPL")  # (as reviewed: "0 flagged ...")
    assert by_ticker.code == 0 and by_ticker.out.startswith("0 flagged")  # the unit is pending already


def test_a_session_traded_only_over_the_counter_is_not_missing_in_grouped(work):
    """audit --quality's grouped cross-check must not flag legitimate data. Polygon's
    grouped daily endpoint leaves OTC securities out unless asked (`include_otc`,
    default false); the per-ticker /range day bars of a symbol include its OTC sessions
    (`otc: true`, a column polyledger stores), e.g. a name delisted to the pink sheets
    under the same symbol within a day unit's year. Such a session is flagged
    `missing_in_grouped` (exit 1, and `retry --flagged` refetches the market's grouped
    day for nothing): the grouped request never asks include_otc
    (polyledger/datasets/grouped_daily.py:46 sends only `adjusted`) and the comparison
    never looks at the day bar's `otc` (polyledger/checks/grouped.py:127)."""
    from polyledger.checks.quality import check_quality
    from polyledger.datasets import MARKET

    days = [D(2024, 3, 4), D(2024, 3, 5)]  # listed on the 4th, traded OTC on the 5th
    with Ledger(work / "ledger.db") as opened:
        store = BarStore(work / "data")
        year = stored_bars("XYZ", days).with_columns(otc=pl.Series([False, True]))
        add_done(opened, store, "day", "XYZ", D(2024, 1, 1), D(2024, 12, 31), year)
        for day, listed in zip(days, (True, False), strict=True):
            bars = pl.concat([stored_bars("ABC", [day]), *([stored_bars("XYZ", [day])] if listed else [])])
            add_done(opened, store, "grouped_daily", MARKET, day, day, bars, name=day.isoformat())
        add_done(opened, store, "day", "ABC", D(2024, 1, 1), D(2024, 12, 31), stored_bars("ABC", days))
        report = check_quality(opened, store)
    assert report.counts["missing_in_grouped"] == 0, report.examples

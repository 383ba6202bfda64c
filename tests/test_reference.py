"""Reference datasets (splits, dividends, ticker details): recorded real responses parse into
the stored columns, and a stale-adjustment audit finds bars fetched before a later split."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    OLD_SQLITE_VARIABLES,
    LedgerClock,
    ScriptedClient,
    at_stock_sqlite_limit,
    read_dataset,
    run_cli,
    truth,
)

import polyledger
from polyledger.checks.audit import audit
from polyledger.datasets import splits as splits_module
from polyledger.datasets.details import DETAILS
from polyledger.datasets.dividends import DIVIDENDS, unique_dividends
from polyledger.datasets.reference import plan_reference, results_frame
from polyledger.datasets.splits import SPLITS
from polyledger.errors import PermanentError, TransientError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.fetch.units import UnitJob, UnitOutcome, process_units
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.periods import et_midnight_ms
from polyledger.plan import plan
from polyledger.polygon.reference import decode_results
from polyledger.requeue import retry_stale
from polyledger.storage import BarStore
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket, messy_listings
from polyledger.testing.messy import SPLIT_TWICE

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def test_recorded_splits_parse_into_the_stored_columns():
    page = decode_results(recorded("spec-examples/stocks_v1_splits.example.json"))
    frame = results_frame(page.results, SPLITS)
    assert frame.columns == list(SPLITS.schema)
    assert frame.row(0, named=True) == {
        "ticker": "AAPL",
        "execution_date": dt.date(2005, 2, 28),
        "split_from": 1.0,
        "split_to": 2.0,
        "adjustment_type": "forward_split",
        "historical_adjustment_factor": 0.017857,
        "id": "E90a77bdf742661741ed7c8fc086415f0457c2816c45899d73aaa88bdc8ff6025",
    }


def test_recorded_dividends_parse_into_the_stored_columns():
    page = decode_results(recorded("spec-examples/stocks_v1_dividends.example.json"))
    row = results_frame(page.results, DIVIDENDS).row(0, named=True)
    assert row["ex_dividend_date"] == dt.date(2025, 8, 11) and row["pay_date"] == dt.date(2025, 8, 14)
    assert row["cash_amount"] == 0.26 and row["frequency"] == 4 and row["currency"] == "USD"


def test_recorded_ticker_details_parse_one_object_as_one_row():
    for relative in (
        "spec-examples/v3_reference_tickers_ticker.example.json",
        "api-mocks/v3/reference/tickers/AAPL.json",
    ):
        page = decode_results(recorded(relative))
        frame = results_frame(page.results, DETAILS)
        assert frame.height == 1
        row = frame.row(0, named=True)
        assert row["ticker"] == "AAPL" and row["list_date"] == dt.date(1980, 12, 12)
        assert row["market_cap"] > 1e11 and row["cik"] == "0000320193"
        assert row["sic_code"] == "3571"  # a string: leading zeros of other codes kept


def test_recorded_tickers_list_pages_carry_their_next_url():
    first = decode_results(recorded("api-mocks/v3/reference/tickers.json"))
    assert first.next_url and "cursor=" in first.next_url
    assert [row["ticker"] for row in first.results][:1] == ["A"]
    assert all(row["type"] and row["primary_exchange"] for row in first.results)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"status": "ERROR", "error": "x"}', b'{"results": [1]}']
)
def test_undecodable_reference_bodies_are_transient(body):
    with pytest.raises(TransientError):
        decode_results(body)


KEY = "reference-key"
SPLIT_DAY = dt.date(2024, 6, 10)


def _run(ledger: Ledger, data: Path, url: str, *datasets: str) -> None:
    options = RunOptions(workers=2, rate=500, datasets=datasets or None)
    report = Run(ledger, BarStore(data), api_key=KEY, base_url=url, options=options).execute()
    assert report.ok, report.message


def test_a_later_split_makes_adjusted_units_stale_and_retry_stale_fetches_them_again(tmp_path):
    """Minute bars of Jan-Jul 2024 fetched (adjusted) on 2024-04-02 and 2024-08-01; a 1:4
    split on 2024-06-10 then rebases every price before it. The audit flags exactly the
    units fetched before the split whose bars predate it; `retry --stale` refetches them
    and the dataset then equals the API's adjusted bars."""
    plain = Listing("SPLT", bars_per_day=30)
    before = SyntheticMarket([plain], seed=5)
    after = SyntheticMarket([Listing("SPLT", bars_per_day=30, splits=(Split(SPLIT_DAY, 1, 4),))], seed=5)
    path, data = tmp_path / "ledger.db", tmp_path / "data"

    def clock_at(day: dt.date):  # the ledger records fetched_at from its clock
        return lambda: dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)

    with (
        Ledger(path, clock=clock_at(dt.date(2024, 4, 2))) as ledger,
        StandInServer(before, api_keys=(KEY,)) as api,
    ):
        plan(ledger, ["SPLT"], "minute", dt.date(2024, 1, 1), dt.date(2024, 3, 31))
        _run(ledger, data, api.url)
    with (
        Ledger(path, clock=clock_at(dt.date(2024, 8, 1))) as ledger,
        StandInServer(after, api_keys=(KEY,)) as api,
    ):
        plan(ledger, ["SPLT"], "minute", dt.date(2024, 4, 1), dt.date(2024, 7, 31))  # after the split
        plan_reference(ledger, ["SPLT"], "splits", dt.date(2024, 8, 1))
        _run(ledger, data, api.url)
        assert ledger.query("SELECT execution_date, split_from, split_to FROM splits")[0] == (
            "2024-06-10",
            1.0,
            4.0,
        )
        minute = next(d for d in audit(ledger).datasets if d.dataset == "minute")
        assert minute.stale_adjusted == 3 and not minute.complete  # Jan, Feb, Mar; not Apr-Jul
        assert minute.stale_examples[0] == "SPLT 2024-01: split on 2024-06-10"
        assert (
            read_dataset(data, "minute")
            .filter(pl.col("timestamp") < dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc))
            .get_column("close")
            .to_list()
            == truth(before, "minute", "SPLT", dt.date(2024, 1, 1), dt.date(2024, 3, 31))
            .get_column("close")
            .to_list()
        )  # the old basis, until refetched

        assert retry_stale(ledger) == 3
        _run(ledger, data, api.url)
        assert next(d for d in audit(ledger).datasets if d.dataset == "minute").stale_adjusted == 0
    expected = truth(after, "minute", "SPLT", dt.date(2024, 1, 1), dt.date(2024, 7, 31), adjusted=True)
    assert_frame_equal(read_dataset(data, "minute"), expected)
    assert truth(after, "minute", "SPLT", dt.date(2024, 1, 2), dt.date(2024, 1, 2), adjusted=True)["close"][
        0
    ] * 4 == (
        pytest.approx(
            truth(before, "minute", "SPLT", dt.date(2024, 1, 2), dt.date(2024, 1, 2))["close"][0], rel=1e-3
        )
    )


@pytest.mark.parametrize(
    ("fetched", "stale"),
    [
        (dt.datetime(2024, 6, 10, 1, 0), True),  # 21:00 ET the evening before: already the 10th in UTC
        (dt.datetime(2024, 6, 10, 13, 0), True),  # 09:00 ET, before the open
        (dt.datetime(2024, 6, 10, 15, 0), False),  # 11:00 ET: the split is in force
    ],
)
def test_a_unit_fetched_before_the_open_of_a_splits_day_is_stale(tmp_path, fetched, stale):
    """A split takes effect at the open of its execution date (US/Eastern); the ledger's
    fetched_at is UTC. A unit fetched adjusted the evening before (past midnight UTC) holds
    the old basis: audit counts it stale and `retry --stale` queues it (audited once the
    split is in force)."""
    from support import LedgerClock

    from polyledger.ledger import AttemptRecord, StoredFile

    clock = LedgerClock(fetched.replace(tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        plan(ledger, ["SPLT"], "minute", dt.date(2024, 5, 1), dt.date(2024, 5, 31))
        (unit,) = ledger.claim("w", 60)
        stored = StoredFile("minute/ticker=SPLT/year=2024/month=05/part.parquet", 10, "0" * 64, 100)
        ledger.settle_done(unit, stored, True, AttemptRecord())
        ledger.replace_splits("SPLT", [("2024-06-10", 1.0, 4.0)])
        clock.now = dt.datetime(2024, 6, 11, 12, 0, tzinfo=dt.timezone.utc)
        assert next(d for d in audit(ledger).datasets if d.dataset == "minute").stale_adjusted == int(stale)
        assert retry_stale(ledger) == int(stale)


def test_raw_units_never_go_stale(tmp_path):
    market = SyntheticMarket([Listing("SPLT", bars_per_day=10, splits=(Split(SPLIT_DAY, 1, 4),))], seed=5)
    path = tmp_path / "ledger.db"
    with Ledger(path, clock=lambda: dt.datetime(2024, 4, 2, tzinfo=dt.timezone.utc)) as ledger:
        with StandInServer(market, api_keys=(KEY,)) as api:
            plan(ledger, ["SPLT"], "minute", dt.date(2024, 1, 1), dt.date(2024, 2, 29))
            plan_reference(ledger, ["SPLT"], "splits", dt.date(2024, 8, 1))
            options = RunOptions(workers=2, rate=500, adjusted=False)
            assert (
                Run(ledger, BarStore(tmp_path / "data"), api_key=KEY, base_url=api.url, options=options)
                .execute()
                .ok
            )
        assert next(d for d in audit(ledger).datasets if d.dataset == "minute").stale_adjusted == 0
        assert retry_stale(ledger) == 0
    assert_frame_equal(
        read_dataset(tmp_path / "data", "minute"),
        truth(market, "minute", "SPLT", dt.date(2024, 1, 1), dt.date(2024, 2, 29), adjusted=False),
    )


def test_splits_and_dividends_datasets_download_per_ticker_with_empty_confirmed_for_none(tmp_path):
    listings = [
        Listing("SPLT", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4), Split(dt.date(2021, 3, 1), 3, 1))),
        Listing("DIVY", bars_per_day=5, dividends=(Dividend(dt.date(2023, 5, 5), 0.25),)),
    ]
    market = SyntheticMarket(listings, seed=2)
    with Ledger(tmp_path / "ledger.db") as ledger, StandInServer(market, api_keys=(KEY,)) as api:
        for dataset in ("splits", "dividends"):
            assert plan_reference(ledger, ["SPLT", "DIVY"], dataset, dt.date(2024, 8, 1)) == 2
        _run(ledger, tmp_path / "data", api.url)
        states = {(r.dataset, r.ticker): (r.state, r.rows) for r in ledger.query("SELECT * FROM units")}
    assert states == {
        ("splits", "SPLT"): ("done", 2),
        ("splits", "DIVY"): ("empty_confirmed", 0),
        ("dividends", "SPLT"): ("empty_confirmed", 0),
        ("dividends", "DIVY"): ("done", 1),
    }
    splits = pl.read_parquet(tmp_path / "data" / "splits" / "ticker=SPLT" / "part.parquet").sort(
        "execution_date"
    )
    assert splits.select("execution_date", "split_from", "split_to").rows() == [
        (dt.date(2021, 3, 1), 3.0, 1.0),
        (dt.date(2024, 6, 10), 1.0, 4.0),
    ]
    dividends = pl.read_parquet(tmp_path / "data" / "dividends" / "ticker=DIVY" / "part.parquet")
    assert dividends.select("ex_dividend_date", "cash_amount").rows() == [(dt.date(2023, 5, 5), 0.25)]


def test_a_dividend_the_api_lists_twice_is_stored_once(tmp_path):
    """The same dividend (one id) twice in the answer: one row in the file, as a split
    listed twice is one row of the ledger's splits table."""
    again = Dividend(dt.date(2023, 5, 5), 0.25)
    market = SyntheticMarket([Listing("DIVY", bars_per_day=5, dividends=(again, again))], seed=2)
    assert len(market.dividend_records("DIVY")) == 2
    with Ledger(tmp_path / "ledger.db") as ledger, StandInServer(market, api_keys=(KEY,)) as api:
        plan_reference(ledger, ["DIVY"], "dividends", dt.date(2024, 8, 1))
        _run(ledger, tmp_path / "data", api.url)
        assert [(r.state, r.rows) for r in ledger.query("SELECT * FROM units")] == [("done", 1)]
    dividends = pl.read_parquet(tmp_path / "data" / "dividends" / "ticker=DIVY" / "part.parquet")
    assert dividends.select("ex_dividend_date", "cash_amount").rows() == [(dt.date(2023, 5, 5), 0.25)]


def test_a_dividend_is_what_it_says_whatever_its_ids(monkeypatch):
    """Records that say the same (ticker, dates, cash, currency, frequency, type) are one
    dividend, whatever their ids (the API has listed one under two: polygon-io/issues#162)
    or the factor the API recomputes; a special paid on a regular's ex-date is another.
    The file keeps what the API listed, each id once: sync's refresh compares ids."""
    from polyledger.datasets import dividends

    base = {"ticker": "X", "ex_dividend_date": "2024-03-01", "cash_amount": 0.25, "frequency": 4}
    rows = [
        base,
        {**base, "historical_adjustment_factor": 0.9},  # recomputed by the API: the same dividend
        {**base, "frequency": 0, "distribution_type": "special"},
        {**base, "id": "E1"},
        {**base, "id": "E2"},
        {**base, "id": "E1"},
    ]
    frame = results_frame(rows, DIVIDENDS)
    kept = unique_dividends(frame)
    assert kept.select("frequency", "id").rows() == [(4, None), (0, None)]
    assert unique_dividends(frame.lazy()).collect().equals(kept)
    monkeypatch.setattr(dividends, "fetch_results", lambda *args: frame)
    stored = dividends.fetch(None, SimpleNamespace(ticker="X"), False, None)  # type: ignore[arg-type]
    assert stored.select("frequency", "id").rows() == [(4, None), (0, None), (4, "E1"), (4, "E2")]


def test_a_split_the_api_lists_twice_is_stored_once(monkeypatch):
    """As dividends: the splits file holds each split once (by id, else by what it says);
    the ledger's splits table keys them by date already."""
    from polyledger.datasets import splits

    row = {"ticker": "SPLT", "execution_date": "2024-06-10", "split_from": 1.0, "split_to": 4.0}
    answer = results_frame(
        [row, {**row, "historical_adjustment_factor": 0.25}, {**row, "id": "S1"}, {**row, "id": "S1"}], SPLITS
    )
    monkeypatch.setattr(splits, "fetch_results", lambda *args: answer)
    unit = SimpleNamespace(ticker="SPLT")
    stored = splits.fetch(None, unit, True, None)  # type: ignore[arg-type]
    assert stored.select("id").rows() == [(None,), ("S1",)]


def test_two_different_splits_on_one_day_fail_the_unit_saying_both(work):
    """The ledger's splits table holds one ratio a day (what adjustment and the stale audit
    read): two ratios on one date are refused with both named, never one kept silently;
    the same split said two ways (1->4, 2->8) is one ratio."""
    listings = [
        Listing("SPLT", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4), Split(SPLIT_DAY, 1, 5))),
        Listing("SAME", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4), Split(SPLIT_DAY, 2, 8))),
    ]
    (work / "u.csv").write_text("ticker\nSPLT\nSAME\n", encoding="utf-8")
    assert run_cli("plan", "--universe", "u.csv", "--dataset", "splits").code == 0
    with StandInServer(SyntheticMarket(listings, seed=2), api_keys=(API_KEY,)) as api:
        ran = run_cli("run", "--base-url", api.url, "--dataset", "splits")
    assert ran.code == 1, ran.out + ran.err
    found = run_cli(
        "sql", "SELECT ticker, state, error_class, last_error FROM units ORDER BY ticker", "--format", "csv"
    )
    rows = found.out.splitlines()[1:]
    assert rows[0] == "SAME,done,,"
    assert rows[1].startswith("SPLT,failed,conflicting_splits,")
    assert "2 different splits of SPLT on 2024-06-10: 1->4 and 1->5" in rows[1]
    table = run_cli(
        "sql", "SELECT ticker, split_to / split_from AS r FROM splits ORDER BY ticker", "--format", "csv"
    )
    assert table.out.splitlines()[1:] == ["SAME,4.0"]  # nothing of SPLT's guessed into it
    audited = run_cli("audit")
    assert audited.code == 1 and "conflicting_splits" in audited.out


# -- one split listed on two dates ------------------------------------------------------------
#
# The recorded /v3/reference/splits answer lists SHOP's one 10-for-1 split twice: execution
# dates 2022-06-22 and 2022-06-29, both 1 -> 10 (Shopify split once; shares traded
# split-adjusted from 2022-06-29). Both kept, every price before 2022-06-22 would be adjusted
# by 1/100 instead of 1/10, silently.

SHOP_REAL, SHOP_EARLY = dt.date(2022, 6, 29), dt.date(2022, 6, 22)


def _shop_splits_as_stocks_v1() -> bytes:
    """The recorded SHOP records, in /stocks/v1/splits' shape (an adjustment_type each)."""
    answer = json.loads(recorded("api-mocks/v3/reference/splits.json"))
    shop = [
        dict(row, adjustment_type="forward_split") for row in answer["results"] if row["ticker"] == "SHOP"
    ]
    assert [(r["execution_date"], r["split_from"], r["split_to"]) for r in shop] == [
        ("2022-06-29", 1, 10),
        ("2022-06-22", 1, 10),
    ]
    return orjson.dumps({"status": "OK", "request_id": answer["request_id"], "results": shop})


def _raw_day_bars(moves_on: Sequence[dt.date] | None) -> bytes:
    """SHOP's raw daily bars of 2022-06-13 to 07-08 as /range answers them: about 300, and a
    tenth of the price from each of `moves_on` on (the bars of a 1 -> 10 split's date);
    None: no bars."""
    bars, price = [], 300.0
    for day in (
        dt.date(2022, 6, 13) + dt.timedelta(days=n) for n in range(26 if moves_on is not None else 0)
    ):
        if day.weekday() >= 5 or day in (dt.date(2022, 6, 20), dt.date(2022, 7, 4)):
            continue
        price = price / 10 if day in moves_on else price * (1.01 if day.day % 2 else 0.99)
        t = et_midnight_ms(day)
        bars.append(
            {"t": t, "o": price, "h": price * 1.02, "l": price * 0.98, "c": price, "v": 1e6, "n": 900}
        )
    return orjson.dumps(
        {"ticker": "SHOP", "status": "OK", "adjusted": False, "request_id": "rq", "results": bars}
    )


def _fetch_shop_splits(ledger: Ledger, store: BarStore, moves_on: Sequence[dt.date] | None) -> UnitOutcome:
    """SHOP's raw day bars of 2022 fetched first (unless None: its mid-June to early-July
    bars, and nothing on the year's first day when the worker asks it alone), then its
    splits unit, each by the worker against a scripted answer; the splits unit's outcome."""
    job = partial(UnitJob, ledger=ledger, store=store, adjusted=False, run_id="run-1")
    if moves_on is not None:
        ledger.add_units([PlannedUnit("day", "SHOP", dt.date(2022, 1, 1), dt.date(2022, 12, 31))])
        (day,) = process_units(
            ledger.claim("w", 60, limit=1),
            job(client=ScriptedClient([_raw_day_bars(moves_on), _raw_day_bars(None)])),
        )
        assert day.state == "done"
    plan_reference(ledger, ["SHOP"], "splits", dt.date(2024, 8, 1))
    (outcome,) = process_units(
        ledger.claim("w", 60, limit=1), job(client=ScriptedClient([_shop_splits_as_stocks_v1()]))
    )
    return outcome


def _shop_splits_unit(ledger: Ledger) -> tuple:
    (row,) = ledger.query(
        "SELECT state, error_class, last_error, file_path FROM units WHERE dataset = 'splits'"
    )
    return row


def test_a_split_the_api_lists_twice_a_week_apart_is_not_applied_twice(tmp_path):
    """The recorded answer, and no bars in the ledger to tell which date is real: the unit
    fails `conflicting_splits` naming both dates, nothing of SHOP's splits is stored (the
    ledger's table, which adjustment reads, holds none: its adjusted reads warn that SHOP's
    splits are not settled), rather than adjust prices before 2022-06-22 by 1/100."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        outcome = _fetch_shop_splits(ledger, BarStore(tmp_path / "data"), None)
        unit = _shop_splits_unit(ledger)
        table = ledger.query("SELECT execution_date, split_from, split_to FROM splits")
    assert (outcome.state, outcome.error_class) == ("failed", "conflicting_splits")
    assert (unit.state, unit.error_class, unit.file_path) == ("failed", "conflicting_splits", None)
    assert (
        "the API lists one 1->10 split of SHOP on 2 dates 7 days apart, 2022-06-22 and 2022-06-29: "
        "the ledger has no raw day or minute bars of SHOP around every date to tell which is real; "
        "neither is kept"
    ) in unit.last_error
    assert [tuple(row) for row in table] == []
    assert not (tmp_path / "data" / "splits").exists()


@pytest.mark.parametrize(
    ("moves_on", "kept"),
    [
        ((SHOP_REAL,), SHOP_REAL),
        ((SHOP_EARLY,), SHOP_EARLY),  # the bars decide, not which record is newer
        ((), None),  # moved on neither date: the bars do not say which split happened
        ((SHOP_EARLY, SHOP_REAL), None),  # by 1/10 on both: never both applied
    ],
    ids=["real-date-last", "real-date-first", "neither", "both"],
)
def test_a_split_listed_twice_is_kept_on_the_date_the_ledgers_raw_day_bars_move_by_it(
    tmp_path, moves_on, kept
):
    """With SHOP's raw day bars in the ledger, the date whose open is a tenth of the close
    before it (and the other's is not) is the split's: the file and the ledger's table hold
    it alone. Bars moving on neither date, or on both, fail the unit, naming what they show."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        outcome = _fetch_shop_splits(ledger, BarStore(tmp_path / "data"), moves_on)
        unit = _shop_splits_unit(ledger)
        table = [
            tuple(row) for row in ledger.query("SELECT execution_date, split_from, split_to FROM splits")
        ]
    if kept is None:
        assert (outcome.state, unit.error_class) == ("failed", "conflicting_splits")
        assert (
            "SHOP on 2 dates 7 days apart, 2022-06-22 and 2022-06-29: its raw bars (open / previous close: "
            in (unit.last_error)
        )
        assert table == []
        return
    assert (outcome.state, unit.error_class) == ("done", None)
    assert table == [(kept.isoformat(), 1.0, 10.0)]
    stored = pl.read_parquet(tmp_path / "data" / unit.file_path)
    assert stored.select("execution_date", "split_from", "split_to").rows() == [(kept, 1.0, 10.0)]


def test_splits_of_one_ratio_within_31_days_are_one_split_listed_twice():
    """One ratio (said any way) on dates at most 31 days apart is one split listed twice; 32
    days apart, or another ratio, are splits of their own. A ratio closer to 1 than 5:4 is
    never told by bars: a day may move that much by itself."""
    row = {"ticker": "X", "split_from": 1.0, "split_to": 2.0}
    frame = results_frame(
        [{**row, "execution_date": day} for day in ("2024-01-02", "2024-01-02", "2024-02-02")]
        + [{**row, "execution_date": day} for day in ("2024-06-03", "2024-07-05")]  # 32 days
        + [{**row, "execution_date": "2024-09-02", "split_from": 2.0, "split_to": 4.0}]
        + [{**row, "execution_date": "2024-09-09"}]
        + [{**row, "execution_date": "2024-01-10", "split_to": 3.0}],
        SPLITS,
    )
    assert splits_module.listed_twice(frame) == [
        (1.0, 2.0, 2.0, [dt.date(2024, 1, 2), dt.date(2024, 2, 2)]),
        (2.0, 4.0, 2.0, [dt.date(2024, 9, 2), dt.date(2024, 9, 9)]),  # 1->2 first said 2->4
    ]
    small = results_frame(
        [
            {**row, "execution_date": day, "split_from": 10.0, "split_to": 11.0}
            for day in ("2024-03-01", "2024-03-08")
        ],
        SPLITS,
    )
    sessions = pl.DataFrame(
        {
            "session": [dt.date(2024, 2, 29), dt.date(2024, 3, 1), dt.date(2024, 3, 7), dt.date(2024, 3, 8)],
            "open": [100.0, 100 / 1.1, 100 / 1.1, 100 / 1.1],
            "close": [100.0, 100 / 1.1, 100 / 1.1, 100 / 1.1],
        }
    )
    with pytest.raises(PermanentError, match="a ratio this close to 1 cannot be told") as refused:
        splits_module.one_date_each("X", small, sessions)
    assert refused.value.error_class == "conflicting_splits"
    apart = frame.slice(3, 2)  # 32 days apart: two splits, as they came
    assert splits_module.one_date_each("X", apart, None).equals(apart)


def test_a_split_listed_twice_fails_until_raw_day_bars_tell_its_date_then_adjusts_once(work):
    """End to end through the stand-in, whose messy market lists SHOP's one 10-for-1 split on
    2022-06-22 and on 2022-06-29, as the recorded answer does (its prices move on 06-29).
    Fetched before any bars, the splits unit fails `conflicting_splits` naming both dates and
    `audit` says so; once the raw day bars of 2022 are in the ledger, `retry --class
    conflicting_splits` and a run keep the 06-29 split alone, and the adjusted read is the
    market's own adjusted bars: prices before 06-22 times 1/10, not 1/100."""
    market = SyntheticMarket(messy_listings(bars_per_day=5), seed=5)
    (work / "u.csv").write_text(f"ticker\n{SPLIT_TWICE}\n", encoding="utf-8")
    table_sql = "SELECT execution_date, split_from, split_to FROM splits WHERE ticker = 'SHOP'"
    assert run_cli("plan", "--universe", "u.csv", "--dataset", "splits").code == 0
    with StandInServer(market, api_keys=(API_KEY,)) as api:
        first = run_cli("run", "--base-url", api.url, "--unadjusted", "--dataset", "splits")
        assert first.code == 1, first.out + first.err
        unit = run_cli("sql", "SELECT state, error_class, last_error FROM units", "--format", "csv").out
        assert unit.splitlines()[1].startswith("failed,conflicting_splits,")
        assert "1->10 split of SHOP on 2 dates 7 days apart, 2022-06-22 and 2022-06-29" in unit
        assert run_cli("sql", table_sql, "--format", "csv").out.splitlines()[1:] == []
        audited = run_cli("audit")
        assert audited.code == 1 and "conflicting_splits" in audited.out
        planned = run_cli(
            "plan", "--universe", "u.csv", "--dataset", "day", "--from", "2022-01-01", "--to", "2022-12-31"
        )
        assert planned.code == 0, planned.err
        days = run_cli("run", "--base-url", api.url, "--unadjusted", "--dataset", "day")
        assert days.code == 0, days.out + days.err
        assert run_cli("retry", "--class", "conflicting_splits").code == 0
        again = run_cli("run", "--base-url", api.url, "--unadjusted", "--dataset", "splits")
        assert again.code == 0, again.out + again.err
    assert run_cli("sql", table_sql, "--format", "csv").out.splitlines()[1:] == ["2022-06-29,1.0,10.0"]
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        adjusted = dl.bars("day", tickers=[SPLIT_TWICE], adjust="splits").collect()
    expected = truth(market, "day", SPLIT_TWICE, dt.date(2022, 1, 1), dt.date(2022, 12, 31), adjusted=True)
    assert adjusted.height == expected.height > 200
    assert_frame_equal(
        adjusted.select("timestamp", "open", "close"),
        expected.select("timestamp", "open", "close"),
        rel_tol=1e-3,
    )


def test_plan_and_run_splits_from_the_command_line(work):
    market = SyntheticMarket([Listing("SPLT", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4),))], seed=2)
    (work / "u.csv").write_text("ticker\nSPLT\nNOSUCH\n", encoding="utf-8")
    bad = run_cli("plan", "--universe", "u.csv", "--dataset", "splits", "--from", "2024-01-01")
    assert bad.code == 2 and "--from/--to do not apply to splits" in bad.err
    missing = run_cli("plan", "--universe", "u.csv", "--dataset", "minute")
    assert missing.code == 2 and "--from is required for minute bars" in missing.err
    planned = run_cli("plan", "--universe", "u.csv", "--dataset", "splits")
    assert planned.code == 0 and "planned 2 splits units (one per ticker): 2 new" in planned.out
    with StandInServer(market, api_keys=(API_KEY,)) as api:
        ran = run_cli("run", "--base-url", api.url, "--dataset", "splits")
    assert ran.code == 0, ran.out + ran.err
    assert run_cli("audit").code == 0
    states = run_cli("sql", "SELECT ticker, state, rows FROM units ORDER BY ticker", "--format", "csv").out
    assert states.splitlines()[1:] == ["NOSUCH,empty_confirmed,0", "SPLT,done,1"]


def test_plan_counts_a_reused_symbols_two_listings_as_one_reference_unit(work):
    """A symbol on two rows of the universe (two listings, distinct windows) is one splits
    unit: a new ledger says every unit is new, none already in it."""
    (work / "u.csv").write_text(
        "ticker,list_date,delisted_utc\n"
        "ECHO,2001-01-02,2010-06-30T00:00:00Z\n"
        "SOLO,2005-01-03,\n"
        "ECHO,2015-03-02,\n",
        encoding="utf-8",
    )
    planned = run_cli("plan", "--universe", "u.csv", "--dataset", "splits")
    assert planned.code == 0, planned.err
    assert "planned 2 splits units (one per ticker): 2 new, 0 already in" in planned.out
    again = run_cli("plan", "--universe", "u.csv", "--dataset", "splits")
    assert "planned 2 splits units (one per ticker): 0 new, 2 already in" in again.out


def test_only_a_run_that_fetches_bars_decides_adjusted_or_raw(work):
    """Fetching splits (or a universe's details) first must not lock the ledger into
    adjusted bars: `run --unadjusted` afterwards is the README's recommended path."""
    market = SyntheticMarket([Listing("SPLT", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4),))], seed=2)
    (work / "u.csv").write_text("ticker\nSPLT\n", encoding="utf-8")
    with StandInServer(market, api_keys=(API_KEY,)) as api:
        assert run_cli("plan", "--universe", "u.csv", "--dataset", "splits").code == 0
        assert run_cli("run", "--base-url", api.url).code == 0  # only splits are planned yet
        run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
        raw = run_cli("run", "--base-url", api.url, "--unadjusted")
        assert raw.code == 0, raw.err
        refused = run_cli("run", "--base-url", api.url)  # now the ledger holds raw bars
    assert refused.code == 2 and "this ledger holds unadjusted bars" in refused.err
    assert_frame_equal(
        read_dataset(work / "data", "minute"),
        truth(market, "minute", "SPLT", dt.date(2024, 1, 1), dt.date(2024, 1, 31), adjusted=False),
    )


def test_a_data_folder_keeps_one_choice_even_across_ledgers(work):
    """Each ledger keeps one choice, and so does the data folder: the first run that fetches
    bars records it in `polyledger-data.json` and in each bar file's Parquet metadata. A
    second ledger with the other choice on the same folder is refused on one line, exit 2,
    before any request, and the folder is left as it was."""
    market = SyntheticMarket([Listing("SPLT", bars_per_day=5, splits=(Split(SPLIT_DAY, 1, 4),))], seed=2)
    (work / "u.csv").write_text("ticker\nSPLT\n", encoding="utf-8")
    span = ("--from", "2024-01-01", "--to", "2024-02-29")
    for ledger in ("adjusted.db", "raw.db"):
        assert run_cli("plan", "--universe", "u.csv", *span, "--ledger", ledger).code == 0
    with StandInServer(market, api_keys=(API_KEY,)) as api:
        assert run_cli("run", "--base-url", api.url, "--ledger", "adjusted.db").code == 0
        files = sorted((work / "data").rglob("*.parquet"))
        before = {path: path.read_bytes() for path in files}
        asked = api.stats.total
        refused = run_cli("run", "--base-url", api.url, "--ledger", "raw.db", "--unadjusted")
        assert api.stats.total == asked  # not one request
        assert (
            run_cli("run", "--base-url", api.url, "--ledger", "raw.db", "--unadjusted", "--data", "raw").code
            == 0
        )
    assert (refused.code, refused.out) == (2, "")
    assert refused.err == (
        "error: data folder data holds adjusted bars (polyledger-data.json); "
        "use a separate data folder for unadjusted bars\n"
    )
    for folder, ledger, flag in (("data", "adjusted.db", True), ("raw", "raw.db", False)):
        with sqlite3.connect(work / ledger) as db:
            (named,) = db.execute("SELECT value FROM settings WHERE key = 'ledger_id'").fetchone()
            (home,) = db.execute("SELECT value FROM settings WHERE key = 'data_folder'").fetchone()
        marker = json.loads((work / folder / "polyledger-data.json").read_text())
        # each folder, its ledger's, with the id its ledger recorded
        assert marker == {"adjusted": flag, "ledger": named, "id": json.loads(home)["id"]}
    assert len(files) == 2 and {path: path.read_bytes() for path in files} == before
    for folder, flag in (("data", "true"), ("raw", "false")):
        for path in (work / folder).rglob("*.parquet"):
            assert pl.read_parquet_metadata(path)["polyledger.adjusted"] == flag
    assert run_cli("sql", "SELECT state FROM units", "--ledger", "raw.db").out.count("done") == 2


def test_deep_check_refuses_a_data_folder_that_does_not_exist(work):
    market = SyntheticMarket([Listing("SPLT", bars_per_day=5)], seed=2)
    (work / "u.csv").write_text("ticker\nSPLT\n", encoding="utf-8")
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    with StandInServer(market, api_keys=(API_KEY,)) as api:
        assert run_cli("run", "--base-url", api.url).code == 0
    for command in (["repair"], ["audit", "--deep"]):
        result = run_cli(*command, "--data", "typo")
        assert (
            result.code == 2 and "data folder typo does not exist, yet the ledger lists 1 files" in result.err
        )
    assert run_cli("sql", "SELECT state FROM units", "--format", "csv").out.splitlines() == ["state", "done"]


def _fetched_month(ledger: Ledger, ticker: str, month: str, fetched_at: str) -> None:
    """A minute unit of `month` (YYYY-MM), done with adjusted bars fetched at `fetched_at`."""
    from polyledger.ledger import PlannedUnit

    first = dt.date.fromisoformat(f"{month}-01")
    ledger.add_units([PlannedUnit("minute", ticker, first, first + dt.timedelta(days=27))])
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE units SET state = 'done', adjusted = TRUE, fetched_at = '{fetched_at}' "
            f"WHERE dataset = 'minute' AND ticker = '{ticker}' AND period = '{month}'"
        )


def test_a_split_keeps_when_it_was_first_recorded_and_units_fetched_before_a_late_one_are_stale(tmp_path):
    """replace_splits replaces a ticker's splits whole, but a split unchanged in date and
    ratio keeps its first recorded_at (fetched again for another split, it must not make
    the units fetched since its date stale); a unit fetched after a split's date but
    before it was first recorded, within 31 days of the date, is stale; later, it is not."""
    from support import LedgerClock

    from polyledger.ledger.queries import stale_adjusted

    clock = LedgerClock(dt.datetime(2024, 3, 5, 3, 30, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        # both tickers' splits were looked at before (a first look says nothing of when the
        # API learnt of a split: test_a_split_found_by_the_first_look_...)
        plan_reference(ledger, ["SPLT", "OLDT"], "splits", dt.date(2024, 8, 1))
        with ledger.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE units SET fetched_at = '2024-02-01T00:00:00.000Z'")
        ledger.replace_splits("SPLT", [("2024-03-01", 1.0, 2.0)])
        clock.advance(86_400)
        ledger.replace_splits("SPLT", [("2024-03-01", 1.0, 2.0), ("2024-06-03", 1.0, 3.0)])
        rows = ledger.query("SELECT execution_date, recorded_at FROM splits ORDER BY 1")
        assert [tuple(r) for r in rows] == [
            ("2024-03-01", "2024-03-05T03:30:00.000Z"),  # as first recorded
            ("2024-06-03", "2024-03-06T03:30:00.000Z"),
        ]
        clock.advance(86_400)
        ledger.replace_splits("SPLT", [("2024-03-01", 1.0, 4.0)])  # a corrected ratio: new
        # OLDT newly planned: its split of 2024-01-02 first recorded on 2024-03-07
        ledger.replace_splits("OLDT", [("2024-01-02", 1.0, 2.0)])
        assert [tuple(r) for r in ledger.query("SELECT ticker, recorded_at FROM splits ORDER BY 1")] == [
            ("OLDT", "2024-03-07T03:30:00.000Z"),
            ("SPLT", "2024-03-07T03:30:00.000Z"),
        ]
        fetched = {
            ("SPLT", "2024-02"): "2024-03-04",  # after the date, before it was recorded: stale
            ("SPLT", "2024-01"): "2024-03-08",  # after it was recorded
            ("OLDT", "2023-12"): "2024-02-20",  # before recorded, but 49 days after the date
        }
        for (ticker, period), day in fetched.items():
            _fetched_month(ledger, ticker, period, f"{day}T12:00:00.000Z")
        assert [tuple(r)[:3] for r in stale_adjusted(ledger)] == [("minute", "SPLT", "2024-02")]


def test_a_split_found_by_the_first_look_makes_only_units_fetched_before_its_date_stale(tmp_path):
    """Found by a review: splits planned after the bars (or added to a ledger later) are
    first recorded days after bars fetched on the new basis; taken as a late entry, they
    made those months stale (audit exit 1, fetched again). A ticker's first look records
    its splits as of their own dates."""
    from support import LedgerClock

    from polyledger.ledger.queries import stale_adjusted

    clock = LedgerClock(dt.datetime(2024, 2, 21, 12, 0, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        plan_reference(ledger, ["CHAR"], "splits", dt.date(2024, 8, 1))
        for month, fetched in (("2024-02", "2024-02-20"), ("2024-01", "2024-02-13")):
            _fetched_month(ledger, "CHAR", month, f"{fetched}T12:00:00.000Z")
        ledger.replace_splits("CHAR", [("2024-02-14", 1.0, 2.0)])  # the splits' first look
        assert [tuple(r)[:3] for r in stale_adjusted(ledger)] == [("minute", "CHAR", "2024-01")]


def test_bars_fetched_in_the_run_that_records_a_split_are_not_stale_by_it(tmp_path):
    """Found by the full suite (a sync's order of work varies): a month fetched minutes
    before the same run recorded a split the API already knew was stale by the late-entry
    rule. A fetch counts as before the split was known only well before it was recorded
    (12 hours: a late entry is found a night or more later)."""
    from support import LedgerClock

    from polyledger.ledger.queries import stale_adjusted

    clock = LedgerClock(dt.datetime(2024, 3, 6, 3, 35, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        plan_reference(ledger, ["CHAR"], "splits", dt.date(2024, 8, 1))
        with ledger.engine.begin() as connection:  # looked at before: not a first look
            connection.exec_driver_sql("UPDATE units SET fetched_at = '2024-02-01T00:00:00.000Z'")
        fetched = {"2024-02": "2024-03-06T03:30:00.000Z", "2024-01": "2024-03-05T03:30:00.000Z"}
        for month, at in fetched.items():  # minutes before (this run), a night before
            _fetched_month(ledger, "CHAR", month, at)
        ledger.replace_splits("CHAR", [("2024-03-01", 1.0, 2.0)])  # recorded at 03:35
        assert [tuple(r)[:3] for r in stale_adjusted(ledger)] == [("minute", "CHAR", "2024-01")]


def test_a_split_listed_under_a_renamed_companys_later_symbol_makes_its_earlier_symbols_units_stale(tmp_path):
    check_split_under_later_symbol_stales_earlier(tmp_path / "ledger.db")


def check_split_under_later_symbol_stales_earlier(location: object) -> None:
    """RENCO traded as OLD until 2019-06-28, then as NEW; its 1:2 split of 2019-03-04 (as
    OLD) is listed by the API under NEW only (polygon-io/issues#253). The API rebases OLD's
    prices before it (adjusting on read applies it to OLD's bars: `adjust.EventOwners`),
    yet the stale audit matched splits to units by ticker: OLD's adjusted months fetched
    before the split were never flagged, nor queued by `retry --stale`. Matched by the
    owning security, they are; so are they alone: NEW's month (after the split), the
    months of another company's symbol, and OLD's month after the split are not."""
    from support import LedgerClock

    from polyledger.ledger.queries import stale_adjusted, stale_per_dataset
    from polyledger.listings import Listing as Window

    clock = LedgerClock(dt.datetime(2019, 2, 1, 12, tzinfo=dt.timezone.utc))
    with Ledger(location, clock=clock) as ledger:  # type: ignore[arg-type]
        ledger.record_listings(
            [
                Window("OLD", None, dt.date(2019, 6, 28), "RENCO", "universe_file"),
                Window("NEW", dt.date(2019, 7, 1), None, "RENCO", "universe_file"),
                Window("ELSE", None, None, "ELSECO", "universe_file"),
            ]
        )
        plan_reference(ledger, ["OLD", "NEW"], "splits", dt.date(2019, 8, 1))
        for ticker, month in (("OLD", "2019-01"), ("OLD", "2019-02"), ("ELSE", "2019-02")):
            _fetched_month(ledger, ticker, month, "2019-02-20T12:00:00.000Z")
        for ticker, month in (("OLD", "2019-04"), ("NEW", "2019-07")):
            _fetched_month(ledger, ticker, month, "2019-02-20T12:00:00.000Z")  # bars after the split
        ledger.replace_splits("NEW", [("2019-03-04", 1.0, 2.0)])  # the splits' first look
        clock.now = dt.datetime(2019, 8, 1, 12, tzinfo=dt.timezone.utc)
        stale = [tuple(r) for r in stale_adjusted(ledger)]
        assert stale == [
            ("minute", "OLD", "2019-01", "2019-03-04"),
            ("minute", "OLD", "2019-02", "2019-03-04"),
        ], f"OLD's months fetched before RENCO's split listed under NEW: stale {stale}"
        assert stale_per_dataset(ledger) == {"minute": 2}
        minute = next(d for d in audit(ledger).datasets if d.dataset == "minute")
        assert minute.stale_adjusted == 2 and minute.stale_examples[0] == "OLD 2019-01: split on 2019-03-04"
        assert retry_stale(ledger) == 2


def test_a_reverse_split_listed_under_the_symbol_left_on_the_day_of_a_rename_stales_that_symbols_units(
    tmp_path,
):
    """SMALLCO traded as XYZ until 2019-07-12 (a Friday) and as XYZD from 2019-07-15; its
    1-for-10 reverse split is listed under XYZ only, dated on XYZD's first session (a
    reverse split and a new symbol on one day). Adjusting on read applies it to XYZ's bars
    (`EventOwners`: the company that left XYZ the session before). XYZ's adjusted months
    fetched before it are stale (XYZ's July holds July 1-12); XYZD's July, which holds
    its bars from the split's date on only, is not: the listing SMALLCO traded under on
    the date starts on it, and holds no bar the split rebases."""
    from support import LedgerClock

    from polyledger.ledger.queries import stale_adjusted
    from polyledger.listings import Listing as Window

    clock = LedgerClock(dt.datetime(2019, 7, 1, 12, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        ledger.record_listings(
            [
                Window("XYZ", None, dt.date(2019, 7, 12), "SMALLCO", "universe_file"),
                Window("XYZD", dt.date(2019, 7, 15), None, "SMALLCO", "universe_file"),
            ]
        )
        plan_reference(ledger, ["XYZ", "XYZD"], "splits", dt.date(2019, 8, 1))
        for ticker, month in (("XYZ", "2019-06"), ("XYZ", "2019-07"), ("XYZD", "2019-07")):
            _fetched_month(ledger, ticker, month, "2019-07-10T12:00:00.000Z")
        ledger.replace_splits("XYZ", [("2019-07-15", 10.0, 1.0)])  # the splits' first look
        clock.now = dt.datetime(2019, 8, 1, 12, tzinfo=dt.timezone.utc)
        stale = [tuple(r) for r in stale_adjusted(ledger)]
        assert stale == [
            ("minute", "XYZ", "2019-06", "2019-07-15"),
            ("minute", "XYZ", "2019-07", "2019-07-15"),
        ], f"XYZ's months fetched before SMALLCO's reverse split listed under XYZ: stale {stale}"


def _renamed_companies(ledger: Ledger, count: int) -> None:
    """`count` companies, each trading as O{i} until 2019-06-28 and as N{i} from 2019-07-01,
    each with a 1:2 split of 2019-03-04 listed under N{i} only (polygon-io/issues#253).
    O00000's January is an adjusted month fetched before the split: stale by it."""
    from polyledger.listings import Listing as Window

    listings = []
    for i in range(count):
        listings += [
            Window(f"O{i:05d}", None, dt.date(2019, 6, 28), f"CO{i:05d}", "universe_file"),
            Window(f"N{i:05d}", dt.date(2019, 7, 1), None, f"CO{i:05d}", "universe_file"),
        ]
    ledger.record_listings(listings)
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO splits (ticker, execution_date, split_from, split_to, recorded_at) VALUES "
            + ", ".join(
                f"('N{i:05d}', '2019-03-04', 1.0, 2.0, '2019-03-04T12:00:00.000Z')" for i in range(count)
            )
        )
    _fetched_month(ledger, "O00000", "2019-01", "2019-02-20T12:00:00.000Z")


@pytest.mark.parametrize(
    ("variables", "companies"),
    [(OLD_SQLITE_VARIABLES, 200), (32_766, 6_600)],
    ids=["sqlite-before-3.32", "stock-sqlite"],
)
def test_the_stale_split_audit_runs_with_more_renamed_companies_splits_than_sqlite_binds(
    tmp_path, variables, companies
):
    """The splits matched to another symbol of their company (a renamed company's splits
    before its rename, listed under the later symbol) were bound five variables a row: 200
    renamed companies stopped the stale check of `audit`, `status` and `retry --stale` on
    a SQLite before 3.32 with 'too many SQL variables', 6,600 on a stock one (a review,
    2026-12-02). They are one JSON value now, whatever their number."""
    from polyledger.ledger.queries import stale_adjusted, stale_per_dataset

    clock = LedgerClock(dt.datetime(2019, 8, 1, 12, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        _renamed_companies(ledger, companies)
        at_stock_sqlite_limit(ledger, variables)
        assert [tuple(row) for row in stale_adjusted(ledger)] == [
            ("minute", "O00000", "2019-01", "2019-03-04")
        ]
        assert stale_per_dataset(ledger) == {"minute": 1}


def test_retry_stale_of_a_universes_tickers_runs_on_an_old_sqlite_with_a_hundred_renamed_companies(tmp_path):
    """`retry --stale` narrowed to tickers binds a slice of 500 tickers and the matched
    splits in each statement: 100 renamed companies' splits (500 variables, as they were
    bound) and a universe of 500 tickers were past a SQLite before 3.32 (999)."""
    clock = LedgerClock(dt.datetime(2019, 8, 1, 12, tzinfo=dt.timezone.utc))
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        _renamed_companies(ledger, 100)
        universe = ["O00000", *(f"U{i:04d}" for i in range(499))]
        ledger.add_units(
            PlannedUnit("minute", t, dt.date(2019, 1, 1), dt.date(2019, 1, 31)) for t in universe[1:]
        )
        at_stock_sqlite_limit(ledger, OLD_SQLITE_VARIABLES)
        assert retry_stale(ledger, universe) == 1

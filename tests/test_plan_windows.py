"""Listing windows: a universe with list_date / delisted_utc plans no unit outside a
ticker's life, so no request is spent there, and still gets every bar."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, read_dataset, run_cli, truth, write_universe

from polyledger.ledger import AttemptRecord, Ledger
from polyledger.listings import Listing
from polyledger.periods import et_date_of_ms
from polyledger.plan import plan, plan_units
from polyledger.testing import StandInServer

D = dt.date
NEWCO = Listing("NEWCO", first_day=D(2023, 6, 14))  # as in tests/support.LISTINGS
GONE = Listing("GONE", last_day=D(2023, 4, 20))
AAPL = Listing("AAPL")
YEAR_2023 = (D(2023, 1, 1), D(2023, 12, 31))


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def units(ledger: Ledger, dataset: str = "minute") -> dict[str, list[tuple[str, str]]]:
    """{ticker: [(period_start, period_end), ...]} in time order."""
    rows = ledger.query(
        "SELECT ticker, period_start, period_end FROM units WHERE dataset = :d ORDER BY ticker, period_start",
        {"d": dataset},
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row.ticker, []).append((row.period_start, row.period_end))
    return found


def months(first: int, last: int, year: int = 2023) -> list[tuple[str, str]]:
    """Whole calendar months first..last of a year, as the ledger stores them."""
    ends = {m: (D(year + m // 12, m % 12 + 1, 1) - dt.timedelta(days=1)) for m in range(first, last + 1)}
    return [(D(year, m, 1).isoformat(), ends[m].isoformat()) for m in range(first, last + 1)]


def test_only_months_inside_the_listing_are_planned_and_never_clipped_to_it(ledger):
    result = plan(ledger, [AAPL, NEWCO, GONE], "minute", *YEAR_2023)
    assert units(ledger) == {
        "AAPL": months(1, 12),
        "NEWCO": months(6, 12),  # June whole, though the listing is on the 14th
        "GONE": months(1, 4),  # April whole, though the last session is the 20th
    }
    assert (result.tickers, result.units_in_plan, result.added) == (3, 12 + 7 + 4, 23)
    assert result.outside_listing == 5 + 8
    assert result.already_planned == 0


def test_day_units_are_the_years_inside_the_listing(ledger):
    universe = [
        Listing("NEWCO", first_day=D(2023, 6, 14)),
        Listing("GONE", last_day=D(2022, 4, 20)),
        Listing("LATER", first_day=D(2025, 1, 2)),  # listed after the plan's range
        Listing("BOTH", first_day=D(2022, 12, 31), last_day=D(2023, 1, 1)),
    ]
    result = plan(ledger, universe, "day", D(2021, 3, 1), D(2024, 6, 30))
    assert units(ledger, "day") == {
        "NEWCO": [("2023-01-01", "2023-12-31"), ("2024-01-01", "2024-06-30")],  # clipped by --to only
        "GONE": [("2021-03-01", "2021-12-31"), ("2022-01-01", "2022-12-31")],  # clipped by --from only
        "BOTH": [("2022-01-01", "2022-12-31"), ("2023-01-01", "2023-12-31")],
    }
    assert (result.units_in_plan, result.outside_listing) == (6, 2 + 2 + 4 + 2)


@pytest.mark.parametrize(
    "member, planned",
    [
        (Listing("X", first_day=D(2023, 6, 30)), months(6, 12)),  # the month's last day
        (Listing("X", first_day=D(2023, 7, 1)), months(7, 12)),  # the next month's first
        (Listing("X", last_day=D(2023, 4, 1)), months(1, 4)),
        (Listing("X", last_day=D(2023, 3, 31)), months(1, 3)),
        (Listing("X", first_day=D(2023, 5, 31), last_day=D(2023, 6, 1)), months(5, 6)),
        (Listing("X", first_day=D(2024, 1, 2)), []),  # after the range
        (Listing("X", last_day=D(2022, 12, 30)), []),  # before it
    ],
)
def test_window_edges_on_month_boundaries(ledger, member, planned):
    result = plan(ledger, [member], "minute", *YEAR_2023)
    assert units(ledger).get("X", []) == planned
    assert (result.units_in_plan, result.outside_listing) == (len(planned), 12 - len(planned))


def test_the_plan_range_clips_and_the_window_only_selects(ledger):
    # --from inside the listing month: June is clipped by --from as always
    plan(ledger, [NEWCO], "minute", D(2023, 6, 20), D(2023, 7, 31))
    assert units(ledger)["NEWCO"] == [("2023-06-20", "2023-06-30"), *months(7, 7)]
    # --to before the listing, in its month: that clipped June has no day of the listing
    result = plan(
        ledger, [Listing("LATE", first_day=D(2023, 6, 14))], "minute", D(2023, 5, 1), D(2023, 6, 10)
    )
    assert "LATE" not in units(ledger) and result.outside_listing == 2


def test_replanning_is_idempotent(ledger):
    first = plan(ledger, [AAPL, NEWCO, GONE], "minute", *YEAR_2023)
    before = units(ledger)
    again = plan(ledger, [AAPL, NEWCO, GONE], "minute", *YEAR_2023)
    assert units(ledger) == before
    assert (again.added, again.widened, again.already_planned) == (0, 0, first.units_in_plan)
    assert again.outside_listing == first.outside_listing == 13


def test_a_wider_plan_widens_only_where_the_ticker_lives(ledger):
    # an older plan without dates ended mid-June; its clipped Junes were fetched
    plan(ledger, ["GONE", "NEWCO"], "minute", D(2023, 6, 1), D(2023, 6, 10))
    for unit in ledger.claim("w", 60, limit=2):
        ledger.settle_empty(unit, True, AttemptRecord(requests=1))
    result = plan(ledger, [GONE, NEWCO], "minute", D(2023, 6, 1), D(2023, 6, 30))
    assert result.widened == 1  # NEWCO's June is fetched whole; GONE, long gone, costs nothing
    state = {r.ticker: (r.state, r.period_end) for r in ledger.query("SELECT * FROM units")}
    assert state == {"GONE": ("empty_confirmed", "2023-06-10"), "NEWCO": ("pending", "2023-06-30")}


def test_a_wider_plan_never_widens_a_tickers_unit_over_days_outside_its_listing(ledger):
    """GONE, planned as a plain ticker for 1-5 March and 10-20 May (both months settled
    empty), turns out delisted on 2023-03-03; a plan of 2023 widened both clipped units to
    their whole months and queued them again: May lies outside the listing, and March's
    days added are all after it (requests for days the listing says have no bars). The
    plan widens a unit over the listed days it asks only; both stay as they were."""
    plan(ledger, ["GONE"], "minute", D(2023, 3, 1), D(2023, 3, 5))
    plan(ledger, ["GONE"], "minute", D(2023, 5, 10), D(2023, 5, 20))
    for unit in ledger.claim("w", 60, limit=2):
        ledger.settle_empty(unit, True, AttemptRecord(requests=1))
    result = plan(ledger, [Listing("GONE", last_day=D(2023, 3, 3))], "minute", *YEAR_2023)
    assert units(ledger)["GONE"] == [
        *months(1, 2),
        ("2023-03-01", "2023-03-05"),
        ("2023-05-10", "2023-05-20"),
    ]
    rows = ledger.query("SELECT period, state FROM units WHERE period IN ('2023-03', '2023-05')")
    assert {row.period: row.state for row in rows} == {
        "2023-03": "empty_confirmed",
        "2023-05": "empty_confirmed",
    }
    assert result.widened == 0


def test_plain_tickers_and_dateless_members_plan_as_before(ledger, tmp_path):
    plain = plan(ledger, ["AAPL", "MSFT"], "minute", D(2023, 1, 10), D(2023, 3, 5))
    with Ledger(tmp_path / "other.db") as other:
        members = plan(other, [Listing("AAPL"), Listing("MSFT")], "minute", D(2023, 1, 10), D(2023, 3, 5))
        assert units(other) == units(ledger)
    assert plain == members
    assert (plain.units_in_plan, plain.added, plain.outside_listing) == (6, 6, 0)


def test_planning_streams_units(ledger, monkeypatch):
    # an endless universe: the generator must yield without reading it all
    endless = (Listing(f"T{i}", first_day=D(2023, 12, 1)) for i in itertools.count())
    first = list(itertools.islice(plan_units(endless, "minute", *YEAR_2023), 3))
    assert [(u.ticker, u.period) for u in first] == [("T0", "2023-12"), ("T1", "2023-12"), ("T2", "2023-12")]
    seen = []
    monkeypatch.setattr(ledger, "add_units", lambda planned: seen.append(type(planned)) or 0)
    plan(ledger, [AAPL, NEWCO], "minute", *YEAR_2023)
    assert seen and not issubclass(seen[0], (list, tuple))  # never a list of every unit


# --- the command line -------------------------------------------------------------


def dated_universe(path, rows: list[tuple[str, str, str]]):
    path.write_text(
        "ticker,name,list_date,delisted_utc\n" + "".join(f"{t},x,{a},{b}\n" for t, a, b in rows),
        encoding="utf-8",
    )
    return path


def test_cli_reports_the_units_outside_listing_windows(work):
    dated_universe(
        work / "u.csv",
        [("AAPL", "1980-12-12", ""), ("NEWCO", "2023-06-14", ""), ("GONE", "", "2023-04-21T00:00:00Z")],
    )
    args = ("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    first, again = run_cli(*args), run_cli(*args)
    assert first.code == again.code == 0
    assert first.out == (
        "planned 23 minute units for 3 tickers (2023-01-01 to 2023-12-31): 23 new, 0 already in ledger.db; "
        "13 outside listing windows, not planned\n"
    )
    assert "0 new, 23 already in ledger.db; 13 outside listing windows" in again.out


def test_cli_with_a_parquet_universe(work):
    pl.DataFrame(
        {"ticker": ["NEWCO", "GONE"], "list_date": ["2023-06-14", None], "delisted_utc": [None, "2023-04-21"]}
    ).write_parquet(work / "u.parquet")
    result = run_cli(
        "plan", "--universe", "u.parquet", "--dataset", "day", "--from", "2022-01-01", "--to", "2023-12-31"
    )
    assert result.code == 0, result.err
    assert "planned 3 day units for 2 tickers" in result.out and "1 outside listing windows" in result.out


def test_cli_without_date_columns_prints_as_before(work):
    write_universe(work / "u.csv", ["AAPL", "MSFT"])
    result = run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-03-31")
    assert (
        result.out
        == "planned 6 minute units for 2 tickers (2023-01-01 to 2023-03-31): 6 new, 0 already in ledger.db\n"
    )


# --- against the stand-in server --------------------------------------------------


def request_days(value: str) -> dt.date:
    """A `from`/`to` path segment (a date, or epoch ms on later pages) as an ET date."""
    return et_date_of_ms(int(value)) if value.isdigit() else D.fromisoformat(value)


def test_a_run_never_asks_outside_the_listing_and_gets_every_bar(work, market):
    """NEWCO lists on 2023-06-14 and GONE's last session is 2023-04-20 in the fixture's
    market; TINY has no dates. Nothing is asked outside a listing, nothing is missed."""
    dated_universe(
        work / "u.csv",
        [("NEWCO", "2023-06-14", ""), ("GONE", "", "2023-04-21T04:00:00Z"), ("TINY", "", "")],
    )
    start, end = YEAR_2023
    with StandInServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        planned = run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end)
        assert "13 outside listing windows" in planned.out
        result = run_cli("run", "--base-url", server.url, "--workers", "4", "--rate", "2000")
        assert result.code == 0, result.out + result.err
        requested = server.stats.snapshot()["requested"]

    asked: dict[str, list[tuple[dt.date, dt.date]]] = {}
    for ticker, first, last in requested:
        asked.setdefault(ticker, []).append((request_days(first), request_days(last)))
    assert set(asked) == {"NEWCO", "GONE", "TINY"}
    assert min(first for first, _ in asked["NEWCO"]) == D(2023, 6, 1)  # June whole, nothing before
    assert max(last for _, last in asked["GONE"]) == D(2023, 4, 30)  # April whole, nothing after
    assert min(first for first, _ in asked["TINY"]) == start and max(last for _, last in asked["TINY"]) == end

    expected = pl.concat([truth(market, "minute", t, start, end) for t in ("GONE", "NEWCO", "TINY")])
    assert expected.filter(pl.col("ticker") == "NEWCO").height > 0  # the listings do have bars
    assert expected.filter(pl.col("ticker") == "GONE").height > 0
    assert_frame_equal(read_dataset(work / "data", "minute"), expected.sort("ticker", "timestamp"))
    assert run_cli("audit").code == 0


def test_audit_reports_days_inside_the_planned_range_that_no_unit_covers(ledger):
    """The ledger's record of what `plan` was asked (`planned`: the earliest --from to the
    last --to) spans January to March after a plan of January then one of March: February
    is in no unit, and `audit` says so (`unplanned`, exit 1), not COMPLETE. Only days the
    record says were planned, between a ticker's units and inside its listing windows,
    count: a reused symbol's days between its companies, the part of a range another
    universe planned only, and a dataset planned without the record are no hole."""
    check_unplanned_days(ledger)


def check_unplanned_days(ledger):  # type: ignore[no-untyped-def]
    """The audit's `unplanned` class on `ledger` (SQLite here, PostgreSQL in test_postgres)."""
    from polyledger.checks.audit import UnplannedDays, audit

    members = [
        AAPL,
        Listing("REUSED", last_day=D(2024, 1, 10), composite_figi="BBG000000RU1"),
        Listing("REUSED", first_day=D(2024, 3, 5), composite_figi="BBG000000RU2"),
    ]
    for start, end in ((D(2024, 1, 1), D(2024, 1, 15)), (D(2024, 3, 1), D(2024, 3, 31))):
        plan(ledger, members, "minute", start, end)
        ledger.remember_plan("minute", "/u.csv", start, end)  # as `polyledger plan` records it
    plan(ledger, [AAPL], "minute", D(2024, 6, 1), D(2024, 6, 30))  # another universe, its own range
    ledger.remember_plan("minute", "/other.csv", D(2024, 6, 1), D(2024, 6, 30))
    plan(ledger, [AAPL], "day", D(2020, 1, 1), D(2020, 12, 31))  # planned, never recorded: not judged
    plan(ledger, [AAPL], "day", D(2022, 1, 1), D(2022, 12, 31))
    plan(ledger, [], "grouped_daily", D(2024, 1, 2), D(2024, 1, 5))
    plan(ledger, [], "grouped_daily", D(2024, 1, 10), D(2024, 1, 12))
    ledger.remember_plan("grouped_daily", "", D(2024, 1, 2), D(2024, 1, 12))
    for unit in ledger.claim("w", 60, limit=100):
        ledger.settle_empty(unit, False, AttemptRecord())
    report = {entry.dataset: entry for entry in audit(ledger).datasets}
    assert report["minute"].unplanned == [UnplannedDays("AAPL", "2024-01-16", "2024-02-29", 32)]
    assert report["grouped_daily"].unplanned == [UnplannedDays("us-stocks", "2024-01-08", "2024-01-09", 2)]
    assert report["day"].unplanned == [] and report["day"].complete
    assert not report["minute"].complete and audit(ledger).exit_code == 1

"""The flat-file route a calendar year at a time: a run's success is every year's, earlier
runs' failures count, a --max-units spent at a year's end says what is left, and a year's
claims never walk the other years' pending units (found by a review of the year loop:
each test failed on its first version)."""

# ruff: noqa: F811 - moto_endpoint, the fixture imported from test_s3, is each test's argument
from __future__ import annotations

import datetime as dt

from flat_support import D
from support import run_cli, write_universe
from test_flatfiles import MAY, SMALL, _bucket, _flat, _plan_may, _units
from test_s3 import moto_endpoint  # noqa: F401 - the session's local S3

from polyledger.testing.flatfiles import FlatDefects, publish, s3_client
from polyledger.trading_days import trading_days


def _plan(work, first: str, last: str, dataset: str = "minute", ledger: str = "l.db") -> None:  # type: ignore[no-untyped-def]
    write_universe(work / "u.csv", SMALL)
    result = run_cli(
        "plan", "--universe", "u.csv", "--from", first, "--to", last, "--dataset", dataset, "--ledger", ledger
    )
    assert result.code == 0, result.err


def test_a_second_run_with_failed_units_and_nothing_open_is_not_a_success(
    work, market, moto_endpoint, monkeypatch, request
):
    """A day file missing: the first run fails the day and its months (exit 1). The next
    run, with nothing pending (no retry), found no open year and ran nothing: it says
    "every unit of the flat-file route is settled" and exits 0, while the months are
    failed. Before the year loop both phases ran and their unsettled (earlier failures
    count, as on the REST route) made it exit 1."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    missing = D(2023, 5, 10)
    publish(s3_client(moto_endpoint), bucket, market, MAY, SMALL, kinds=("minute",),
            defects=FlatDefects(missing=(missing,)))  # fmt: skip
    _plan_may(work, SMALL)
    first = _flat("l.db", "data")
    assert first.code == 1, first.out
    failed = {(row["ticker"], row["state"]) for row in _units("l.db", "minute")}
    assert failed == {("AAPL", "failed"), ("TINY", "failed")}

    again = _flat("l.db", "data")
    assert "every unit of the flat-file route is settled" not in again.out, again.out
    assert again.code == 1, (again.code, again.out)


def test_failed_units_of_an_earlier_year_still_fail_a_run_of_a_later_year(
    work, market, moto_endpoint, monkeypatch, request
):
    """December 2022's months failed (a missing day file); then January 2023 is planned and
    the flat route run again. Only 2023 has open units, so the run's scope (counts and
    unsettled) is 2023's alone: it exits 0 with December's months failed. The REST route's
    run (and this route before the year loop) exits 1 while a unit of its scope is failed."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    days = trading_days(D(2022, 12, 1), D(2023, 1, 31))
    publish(s3_client(moto_endpoint), bucket, market, days, SMALL, kinds=("minute",),
            defects=FlatDefects(missing=(D(2022, 12, 14),)))  # fmt: skip
    _plan(work, "2022-12-01", "2022-12-31")
    first = _flat("l.db", "data")
    assert first.code == 1, first.out
    _plan(work, "2022-12-01", "2023-01-31")
    second = _flat("l.db", "data")
    states = {(row["period"], row["state"]) for row in _units("l.db", "minute")}
    assert states == {("2022-12", "failed"), ("2023-01", "done")}, states
    assert second.code == 1, (second.code, second.out)


def test_max_units_spent_at_a_years_end_says_the_later_years_were_not_run(
    work, market, moto_endpoint, monkeypatch, request
):
    """A plan over December 2022 and January 2023; --max-units exactly December's units
    (21 days and 2 months). December is read, built and pruned, then the run returns
    before January: exit 1 with no line saying why (not "--max-units reached", not "run
    again"); the last summary shown is December's, with nothing left unsettled. A budget
    spent inside a year says "ticker units not built this run (...): run again to go on"."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    days = trading_days(D(2022, 12, 1), D(2023, 1, 31))
    publish(s3_client(moto_endpoint), bucket, market, days, SMALL, kinds=("minute",))
    _plan(work, "2022-12-01", "2023-01-31")
    december = [day for day in days if day.year == 2022]
    sample = _flat("l.db", "data", "--max-units", len(december) + 2)
    states = {(row["period"], row["state"]) for row in _units("l.db", "minute")}
    assert states == {("2022-12", "done"), ("2023-01", "pending")}, states
    assert sample.code == 1, sample.out
    assert "run again" in sample.out, sample.out  # what is left, and that a run goes on


def _claim_cost(path, last_year: int) -> int:  # type: ignore[no-untyped-def]
    """SQLite VM steps (in hundreds) of a flat run's windowed claim for 2019's units when
    every ticker's 2019 is built but the last one's, with the plan's months through
    `last_year` pending (a plan is ticker-major: a ticker's months have consecutive ids)."""
    from polyledger.ledger import Ledger, PlannedUnit
    from polyledger.periods import unit_periods

    with Ledger(path) as ledger:
        periods = list(unit_periods("month", dt.date(2019, 1, 1), dt.date(last_year, 12, 31)))
        ledger.add_units(PlannedUnit("minute", f"T{i:04d}", a, b) for i in range(400) for a, b in periods)
        with ledger.engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE units SET state = 'done', fetched_at = 'x' "
                "WHERE period_start < '2020-01-01' AND ticker < 'T0399'"
            )
        connection = ledger._connection()
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0

        connection.set_progress_handler(tick, 100)
        (unit,) = ledger.claim("w", 60, 1, ("minute",), (dt.date(2019, 1, 1), dt.date(2019, 12, 31)))
        connection.set_progress_handler(None, 0)
        assert (unit.ticker, unit.period_start) == ("T0399", dt.date(2019, 1, 1))
    return steps[0]


def test_a_windowed_claim_does_not_scan_the_other_years_pending_units(tmp_path):
    """A year's claims (`claim(..., window)`) walk the pending index in (attempts, id)
    order and test each row's period: with a ticker-major plan, the pending months of later
    years of every ticker already built sit before the year's next unit, so each claim of
    the months phase scans them (about 19,000 rows here, 400 tickers over five years; the
    cost grows with the year's progress: quadratic over a year, and each claim holds
    SQLite's write lock meanwhile). Before the year loop a claim took the first pending
    unit. A claim's cost should not grow with the other years' pending units."""
    alone = _claim_cost(tmp_path / "one-year.db", 2019)
    with_later_years = _claim_cost(tmp_path / "five-years.db", 2023)
    assert with_later_years <= 10 * alone + 20, (alone, with_later_years)

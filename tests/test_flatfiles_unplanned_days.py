"""Flat-file units that reach the build with no day unit planned for their days (a dead run's
units, a month planned during a run): built, never failed for good (found by a review)."""

# ruff: noqa: F811 - moto_endpoint, the fixture imported from test_s3, is each test's argument
from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3

import pytest
from flat_support import use_bucket
from support import run_cli, write_universe
from test_s3 import moto_endpoint  # noqa: F401 - the session's local S3

from polyledger.ledger import Ledger
from polyledger.testing.flatfiles import publish, s3_client
from polyledger.trading_days import trading_days

MAY = trading_days(dt.date(2023, 5, 1), dt.date(2023, 5, 31))
SMALL = ["AAPL", "TINY"]


def _bucket(monkeypatch: pytest.MonkeyPatch, endpoint: str, request: pytest.FixtureRequest) -> str:
    name = f"rvf-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]}"
    use_bucket(monkeypatch, endpoint, name)
    return name


def _plan(work, tickers, start="2023-05-01", end="2023-05-31", dataset="minute", ledger="l.db"):  # type: ignore[no-untyped-def]
    write_universe(work / "u.csv", tickers)
    result = run_cli(
        "plan", "--universe", "u.csv", "--from", start, "--to", end, "--dataset", dataset, "--ledger", ledger
    )
    assert result.code == 0, result.err


def _flat(*extra: object, ledger: str = "l.db", data: str = "data"):  # type: ignore[no-untyped-def]
    return run_cli("run", "--source", "flatfiles", "--unadjusted", "--ledger", ledger, "--data", data, *extra)


def _units(dataset: str, ledger: str = "l.db") -> list[sqlite3.Row]:
    with sqlite3.connect(ledger) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT * FROM units WHERE dataset = ? ORDER BY ticker, period_start", (dataset,)
        ).fetchall()


def test_units_a_killed_rest_run_left_running_are_built_by_the_flat_route(
    work, market, moto_endpoint, monkeypatch, request
):
    """A REST run killed (kill -9) leaves its units `running` under a lease that expires.
    The next run, on the flat route, must take them back and build them ("kill -9 at any
    point loses nothing"). But `prepare` (flatfiles/prepare.py) plans day units only for
    *pending* units' periods (`Ledger.pending_periods`), before the run takes the dead
    leases back: the months' days are never planned, so each month is claimed, requeued
    `days_unread`, and fails for good once its attempts are spent; the next flat run leaves
    it failed (only `not_published`/`days_outdated` are queued again)."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    publish(s3_client(moto_endpoint), bucket, market, MAY, SMALL, kinds=("minute",))
    _plan(work, SMALL)
    with Ledger("l.db") as ledger:  # a REST run that claimed both months, then was killed
        held = ledger.claim("dead-rest-run", lease_seconds=0.01, limit=10, datasets=["minute"])
        assert len(held) == 2
    first = _flat()
    second = _flat()
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (months, first.out, second.out)


def test_a_month_planned_during_a_run_is_built_by_the_next_run(
    work, market, moto_endpoint, monkeypatch, request
):
    """`plan` from another terminal while a flat run builds the months, here adding June to a
    plan of May: docs/flatfiles.md says units planned during a run are built by the next run
    ("Planned during a run, it fails that period's units still to be built `days_outdated`
    (they are built by the next run)"). But June's day units were never planned (`prepare`
    ran before), so the running build (same year window) claims June's units, `unread`
    (transpose.py) takes the missing day rows as days another host is reading
    (`days_unread`, transient), and requeues them until their attempts are spent: failed
    `days_unread`, a class no later run queues again (`prepare` resets only `not_published`
    and `days_outdated`; `pending_periods` sees only pending units). The next run leaves
    June failed."""
    from polyledger.flatfiles import units as flat_units

    bucket = _bucket(monkeypatch, moto_endpoint, request)
    june = trading_days(dt.date(2023, 6, 1), dt.date(2023, 6, 30))
    publish(s3_client(moto_endpoint), bucket, market, MAY + june, SMALL, kinds=("minute",))
    _plan(work, SMALL)
    build, planned = flat_units.build_units, []

    def plan_meanwhile(batch, job, flat, outcomes):  # type: ignore[no-untyped-def]
        if not planned:
            planned.append(1)
            _plan(work, SMALL, "2023-06-01", "2023-06-30")  # another terminal
        return build(batch, job, flat, outcomes)

    monkeypatch.setattr(flat_units, "build_units", plan_meanwhile)
    first = _flat("--workers", "1")
    monkeypatch.setattr(flat_units, "build_units", build)
    second = _flat("--workers", "1")
    months = {(row["ticker"], row["period"], row["state"], row["error_class"]) for row in _units("minute")}
    assert months == {
        ("AAPL", "2023-05", "done", None),
        ("TINY", "2023-05", "done", None),
        ("AAPL", "2023-06", "done", None),
        ("TINY", "2023-06", "done", None),
    }, (months, first.out, second.out)

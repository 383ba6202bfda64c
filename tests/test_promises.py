"""Promises of the README and docs/ the rest of the suite left partly open, each checked where it can break:
a 401 changes no unit whatever its state or dataset; adjusted and raw bars never share a
ledger, whichever came first, and a refused run changes nothing; every exit code of
`audit`, with `--json` carrying the same one; no faulty answer ever confirms a unit empty."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import pytest
from support import API_KEY, FAULT_CLASSES, run_cli, truth, write_universe

from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.polygon.client import RetryPolicy
from polyledger.storage import BarStore
from polyledger.testing import FaultPlan, StandInServer

D = dt.date
# what a unit is, apart from its lease: a run that changes none of this changed no unit
UNIT_COLUMNS = (
    "dataset, ticker, period, state, rows, attempts, error_class, last_error, adjusted, "
    "fetched_at, file_path, checksum, bytes, requests"
)


def unit_snapshot(ledger_path: Path) -> list[tuple]:
    with sqlite3.connect(ledger_path) as connection:
        return connection.execute(f"SELECT {UNIT_COLUMNS} FROM units ORDER BY id").fetchall()


def attempt_count(ledger_path: Path) -> int:
    with sqlite3.connect(ledger_path) as connection:
        return connection.execute("SELECT count(*) FROM unit_attempts").fetchone()[0]


def plan(*args: object) -> None:
    result = run_cli("plan", "--universe", "universe.csv", *args)
    assert result.code == 0, result.err


# --- a 401 --------------------------------------------------------------------------------


def test_a_refused_key_changes_no_unit_of_any_state_or_dataset(work, market, monkeypatch):
    """A ledger with done, empty_confirmed, failed and pending units, bars and splits: runs
    with a refused key (all datasets, then splits alone, the reference path) stop with the
    key named, exit 1, and leave every unit as it was, with no attempt recorded."""
    write_universe(work / "universe.csv", ["TINY", "NEWCO"])
    plan("--from", "2023-01-01", "--to", "2023-03-31")
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 2, 1)) as server:
        assert run_cli("run", "--base-url", server.url).code == 1  # January is not entitled
        plan("--from", "2023-04-01", "--to", "2023-05-31")
        plan("--dataset", "splits")
        before, attempts = unit_snapshot(work / "ledger.db"), attempt_count(work / "ledger.db")
        assert {row[3] for row in before} == {"done", "empty_confirmed", "failed", "pending"}

        monkeypatch.setenv("POLYGON_API_KEY", "pk_REVOKED_key_0000")
        for scope in ((), ("--dataset", "splits")):
            server.stats.reset()
            result = run_cli("run", "--base-url", server.url, "--workers", "4", *scope)
            assert result.code == 1, scope
            assert "API key was refused" in result.out + result.err
            assert server.stats.by_status[401] >= 1, scope  # the refusal really came back
            assert unit_snapshot(work / "ledger.db") == before, scope
            assert attempt_count(work / "ledger.db") == attempts, scope


@pytest.mark.parametrize("workers", [1, 8])
def test_a_refused_key_gives_each_unit_back_once_counted_and_logged_once(work, market, monkeypatch, workers):
    """A 401 stops the run: every unit it had claimed goes back to pending once, and the
    summary's "N given back" and the log's `state=released` lines say so, one each. No
    worker claims a unit given back after the run began to stop (it was 0 given back with
    one worker, the release lost on the fatal path; with 8, a unit claimed and given back
    again by other workers, logged and counted twice)."""
    write_universe(work / "universe.csv", ["TINY", "NEWCO", "AAPL"])
    plan("--from", "2023-01-01", "--to", "2023-02-28")
    before = unit_snapshot(work / "ledger.db")
    monkeypatch.setenv("POLYGON_API_KEY", "pk_REVOKED_key_0000")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", workers, "--log-file", "run.log")
    assert result.code == 1 and "API key was refused" in result.out + result.err
    assert unit_snapshot(work / "ledger.db") == before  # every unit back as it was
    released = [line for line in (work / "run.log").read_text().splitlines() if "state=released" in line]
    units = [line.split("unit: ", 1)[1] for line in released]
    assert released and len(set(units)) == len(units), released  # each unit logged once
    given_back = re.search(r"(\d+) given back", result.out)
    assert given_back and int(given_back.group(1)) == len(units), (result.out, released)


def test_a_unit_claimed_as_the_run_stops_goes_back_untouched(work, market):
    """A worker that claims a unit just after another worker's fatal error stopped the run
    (the stop falls between its check and its claim) gives it back at once: no request,
    nothing counted or logged, the unit as it was (pending, no attempt)."""
    write_universe(work / "universe.csv", ["TINY"])
    plan("--from", "2023-01-01", "--to", "2023-01-31")
    before = unit_snapshot(work / "ledger.db")
    with StandInServer(market, api_keys=(API_KEY,)) as server, Ledger(work / "ledger.db") as ledger:
        job = Run(ledger, BarStore(work / "data"), api_key=API_KEY, base_url=server.url)
        claim = ledger.claim

        def claim_as_the_run_stops(*args, **kwargs):  # type: ignore[no-untyped-def]
            job.stop.set()  # another worker's fatal error, just before this claim
            return claim(*args, **kwargs)

        ledger.claim = claim_as_the_run_stops  # type: ignore[method-assign]
        job._work()
        assert server.stats.bars_requests == 0
    assert job.stats.outcomes == {}
    assert unit_snapshot(work / "ledger.db") == before


# --- adjusted or raw ------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "other"), [((), ("--unadjusted",)), (("--unadjusted",), ())])
def test_a_run_asking_for_the_other_basis_is_refused_and_changes_nothing(work, market, first, other):
    write_universe(work / "universe.csv", ["TINY"])
    plan("--from", "2023-01-01", "--to", "2023-01-31")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, *first).code == 0
        plan("--from", "2022-12-01", "--to", "2023-01-31")  # one more unit, pending
        before = unit_snapshot(work / "ledger.db")
        server.stats.reset()
        refused = run_cli("run", "--base-url", server.url, *other)
        assert server.stats.bars_requests == 0
        assert unit_snapshot(work / "ledger.db") == before
        assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
        held = "unadjusted" if first else "adjusted"
        assert f"this ledger holds {held} bars" in refused.err
        assert run_cli("run", "--base-url", server.url, *first).code == 0  # the first choice goes on
    with sqlite3.connect(work / "ledger.db") as connection:
        assert connection.execute("SELECT DISTINCT adjusted FROM units").fetchall() == [(0 if first else 1,)]


def test_a_run_fetching_only_splits_does_not_choose_the_basis(work, market):
    write_universe(work / "universe.csv", ["TINY"])
    plan("--from", "2023-01-01", "--to", "2023-01-31")
    plan("--dataset", "splits")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, "--dataset", "splits").code == 0  # adjusted default
        assert run_cli("run", "--base-url", server.url, "--unadjusted").code == 0
    with sqlite3.connect(work / "ledger.db") as connection:
        bars = connection.execute("SELECT state, adjusted FROM units WHERE dataset = 'minute'").fetchall()
    assert bars == [("done", 0)]


# --- audit's exit codes -----------------------------------------------------------------------


def audit_code(*args: str) -> int:
    """`audit` exit code, checked against the `exit_code` that `audit --json` reports."""
    plain, as_json = run_cli("audit", *args), run_cli("audit", "--json", *args)
    assert json.loads(as_json.out)["exit_code"] == as_json.code == plain.code, (args, as_json.out)
    return plain.code


def test_audit_exit_codes_0_1_3_and_2(work, market):
    write_universe(work / "universe.csv", ["TINY"])
    plan("--from", "2023-01-01", "--to", "2023-02-28")
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 1, 1)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
        assert audit_code() == 0  # every unit done or empty_confirmed
        assert audit_code("--deep") == 0

        plan("--from", "2022-11-01", "--to", "2023-02-28")  # two more months, pending
        assert audit_code() == 3  # only work left: run again

        run_cli("run", "--base-url", server.url, "--max-units", "1")  # November: not entitled
        assert audit_code() == 1  # a failed unit, December still pending: attention comes first
        run_cli("run", "--base-url", server.url)
        assert audit_code() == 1  # failed units only
        assert run_cli("retry", "--class", "all").code == 0
        server.history_start = None
        assert run_cli("run", "--base-url", server.url).code == 0
        assert audit_code() == 0

    with Ledger(work / "ledger.db") as ledger:  # a split announced for a later day: nothing stale yet
        ledger.replace_splits("TINY", [("2099-01-03", 1.0, 2.0)])
    assert audit_code() == 0
    with sqlite3.connect(work / "ledger.db") as con:  # these adjusted units fetched on 2024-01-02,
        con.execute("UPDATE units SET fetched_at = '2024-01-02T12:00:00.000Z' WHERE fetched_at IS NOT NULL")
    with Ledger(work / "ledger.db") as ledger:  # a split since they were fetched
        ledger.replace_splits("TINY", [("2024-06-03", 1.0, 2.0)])
    assert audit_code() == 1  # stale adjusted units
    with Ledger(work / "ledger.db") as ledger:
        ledger.replace_splits("TINY", [])
    assert audit_code() == 0

    next(iter((work / "data" / "minute").rglob("*.parquet"))).unlink()
    assert audit_code() == 0  # the ledger alone cannot know
    assert audit_code("--deep") == 1  # files and ledger disagree

    for bad in (("--jump", "0.3"), ("--ledger", "missing.db")):
        result = run_cli("audit", *bad)
        assert result.code == 2 and result.err.count("\n") == 1, (bad, result.err)
    assert not (work / "missing.db").exists()


# --- empty_confirmed ----------------------------------------------------------------------------

# TINY trades in both months (bars); NEWCO lists in June 2023, so its January is empty
FAULT_UNITS = (("TINY", D(2023, 1, 1), D(2023, 2, 28)), ("NEWCO", D(2023, 1, 1), D(2023, 1, 31)))


def run_with_faults(work: Path, market, faults: FaultPlan | None) -> list[tuple]:
    """Plan FAULT_UNITS and run them once each (one retry per request), in process."""
    for ticker, start, end in FAULT_UNITS:
        write_universe(work / "universe.csv", [ticker])
        plan("--from", start, "--to", end)
    options = RunOptions(
        workers=1, rate=2000, max_attempts=1, retry=RetryPolicy(max_retries=1, base_delay=0.001)
    )
    with (
        StandInServer(market, api_keys=(API_KEY,), faults=faults) as server,
        Ledger(work / "ledger.db") as ledger,
    ):
        Run(ledger, BarStore(work / "data"), api_key=API_KEY, base_url=server.url, options=options).execute()
        return ledger.query("SELECT ticker, period_start, state, rows, error_class FROM units ORDER BY id")


def test_a_clean_answer_confirms_an_empty_unit(work, market):
    """The control for the test below: without faults these units end done (with the
    truth's bars) or empty_confirmed."""
    units = run_with_faults(work, market, None)
    assert [(u.ticker, str(u.period_start)[:7], u.state) for u in units] == [
        ("TINY", "2023-01", "done"),
        ("TINY", "2023-02", "done"),
        ("NEWCO", "2023-01", "empty_confirmed"),
    ]
    for unit in units:
        first = D.fromisoformat(str(unit.period_start))
        last = D(first.year, first.month + 1, 1) - dt.timedelta(days=1)
        assert unit.rows == truth(market, "minute", unit.ticker, first, last, adjusted=True).height


@pytest.mark.parametrize("kind", sorted(FAULT_CLASSES))
def test_no_faulty_answer_confirms_a_unit_empty(work, market, kind):
    """Every request answered with one kind of fault until the unit's attempts run out:
    each unit ends failed with that class, the empty month as well as those with bars."""
    units = run_with_faults(work, market, FaultPlan(rate=1.0, kinds=(kind,), seed=7))
    assert [(u.state, u.rows, u.error_class) for u in units] == [("failed", None, FAULT_CLASSES[kind])] * 3
    assert not (work / "data").exists() or not any((work / "data").rglob("*.parquet"))

"""`audit` never says complete while days a plan asked for are in no unit, whatever order
or width the plans came in (found by a review of `plan` and `audit`, branch review-plan):
the `planned` row's range is the earliest --from to the latest --to ever given (a narrower
or earlier re-plan cannot shrink it), and a clipped unit a run held while a plan widened it
is owed the days the plan could not give it until a later plan does."""

from __future__ import annotations

import datetime as dt
import json

from support import run_cli, write_universe

from polyledger.ledger import AttemptRecord, Ledger


def settle_all_empty(ledger: Ledger) -> None:
    for unit in ledger.claim("w", 60, limit=1000):
        ledger.settle_empty(unit, True, AttemptRecord(requests=1))


def audit_json(*extra: str) -> tuple[int, dict]:
    result = run_cli("audit", "--json", *extra)
    return result.code, json.loads(result.out)


def minute_entry(report: dict) -> dict:
    return next(d for d in report["datasets"] if d["dataset"] == "minute")


def test_a_narrower_replan_does_not_make_audit_forget_a_hole_it_reported(work):
    """Plan Jan-Mar and Jul-Sep of one universe: April-June is a hole between AAPL's
    units, and audit says so. Planning Jan-Feb again (nothing new) changes nothing: the
    units on both sides of the hole are still there, and so is the hole."""
    write_universe(work / "u.csv", ["AAPL"])
    for start, end in (("2024-01-01", "2024-03-31"), ("2024-07-01", "2024-09-30")):
        assert run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end).code == 0
    with Ledger(work / "ledger.db") as opened:
        settle_all_empty(opened)
    code, report = audit_json()
    assert code == 1 and minute_entry(report)["unplanned"]  # the hole is reported
    again = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-02-29")
    assert again.code == 0 and "0 new" in again.out
    code, report = audit_json()
    assert minute_entry(report)["unplanned"] == [
        {"ticker": "AAPL", "first_day": "2024-04-01", "last_day": "2024-06-28", "trading_days": 63}
    ], "April-June still lie between AAPL's units"
    assert code == 1
    with Ledger(work / "ledger.db") as opened:
        (remembered,) = opened.remembered_plans()
    assert remembered.last_day == dt.date(2024, 2, 29)  # what `sync` plans through: the last --to
    assert remembered.widest_day == dt.date(2024, 9, 30)  # what audit judges: the latest --to


def test_a_plan_of_march_then_one_of_january_spans_february_too(work):
    """commands.md (audit): "a plan of January then one of March spans February". Made in
    the other order (March, then a backfill of January), February is the same hole
    between the same two units."""
    write_universe(work / "u.csv", ["AAPL"])
    for start, end in (("2024-03-01", "2024-03-31"), ("2024-01-01", "2024-01-31")):
        assert run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end).code == 0
    with Ledger(work / "ledger.db") as opened:
        settle_all_empty(opened)
    code, report = audit_json()
    assert minute_entry(report)["unplanned"] == [
        {"ticker": "AAPL", "first_day": "2024-02-01", "last_day": "2024-02-29", "trading_days": 20}
    ]
    assert code == 1


def test_a_clipped_month_a_run_held_while_a_plan_widened_it_is_reported_by_audit(work):
    """commands.md (plan): a unit an earlier plan clipped is widened and fetched whole; a
    unit a run holds is left (`busy`: "plan again after the run"). Until that next plan,
    the days the plan asked for and could not give the unit are `unplanned` (exit 1), not
    COMPLETE; the next plan widens the unit and they are work left (pending)."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-03-01", "--to", "2024-03-15").code == 0
    with Ledger(work / "ledger.db") as opened:
        (held,) = opened.claim("run-on-another-terminal", 600)
        widened = run_cli("plan", "--universe", "u.csv", "--from", "2024-03-01", "--to", "2024-03-31")
        assert "being fetched right now" in widened.out
        opened.settle_empty(held, True, AttemptRecord(requests=1))  # the run settles what it was given
        row = opened.query("SELECT period_end, state FROM units")[0]
        assert (row.period_end, row.state) == ("2024-03-15", "empty_confirmed")
    code, report = audit_json()
    assert minute_entry(report)["unplanned"] == [
        {"ticker": "AAPL", "first_day": "2024-03-18", "last_day": "2024-03-28", "trading_days": 9}
    ], "March 18-28 (29th: Good Friday) are planned (--to 2024-03-31) and in no unit"
    assert code == 1
    # "plan again after the run": the unit is widened, the days are queued, none is owed
    again = run_cli("plan", "--universe", "u.csv", "--from", "2024-03-01", "--to", "2024-03-31")
    assert "1 partly planned period widened" in again.out
    code, report = audit_json()
    assert minute_entry(report)["unplanned"] == [] and code == 3
    with Ledger(work / "ledger.db") as opened:
        assert opened.query("SELECT count(*) AS n FROM unwidened")[0].n == 0

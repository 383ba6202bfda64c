"""The ledger on a real SQLite file: planning, the state machine, claims and leases."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import text
from support import LedgerClock

from polyledger.errors import IllegalTransition, InputError, LeaseLost, SchemaTooNewError
from polyledger.ledger import (
    AttemptRecord,
    ClaimedUnit,
    Ledger,
    PlannedUnit,
    StoredFile,
    UnitState,
    check_transition,
)
from polyledger.ledger.database import open_read_only
from polyledger.ledger.states import allowed_sources
from polyledger.plan import plan

D = dt.date


@pytest.fixture
def clock() -> LedgerClock:
    return LedgerClock()


@pytest.fixture
def ledger(tmp_path, clock):
    with Ledger(tmp_path / "ledger.db", clock=clock) as opened:
        yield opened


def states(ledger: Ledger) -> dict[tuple[str, str], str]:
    return {(r.ticker, r.period_start): r.state for r in ledger.query("SELECT * FROM units")}


def test_plan_is_idempotent_and_only_adds_missing_units(ledger):
    first = plan(ledger, ["AAPL", "MSFT"], "minute", D(2024, 1, 10), D(2024, 3, 5))
    assert (first.units_in_plan, first.added) == (6, 6)
    for unit in ledger.claim("w", 60, limit=3):  # AAPL's three months
        ledger.settle_empty(unit, True, AttemptRecord(requests=1))
    again = plan(ledger, ["AAPL", "MSFT"], "minute", D(2024, 1, 10), D(2024, 3, 5))
    assert (again.added, again.widened) == (0, 0)
    wider = plan(ledger, ["AAPL", "MSFT", "IBM"], "minute", D(2023, 12, 1), D(2024, 3, 5))
    assert wider.added == 2 + 4  # December for the old tickers, four months for IBM
    assert wider.widened == 2  # both clipped Januaries now cover the whole month
    assert states(ledger)[("AAPL", "2024-02-01")] == "empty_confirmed"  # never reset
    assert states(ledger)[("AAPL", "2024-01-01")] == "pending"  # widened, fetched whole again
    widened = ledger.query("SELECT attempts FROM units WHERE ticker = 'AAPL' AND period_start = '2024-01-01'")
    assert widened[0].attempts == 0  # with a fresh attempt budget, as `retry` gives
    periods = ledger.query("SELECT period_start, period_end FROM units WHERE ticker = 'IBM' ORDER BY id")
    assert [(r.period_start, r.period_end) for r in periods][-1] == ("2024-03-01", "2024-03-05")


def test_day_units_are_years(ledger):
    result = plan(ledger, ["AAPL"], "day", D(2004, 3, 1), D(2006, 6, 30))
    assert result.units_in_plan == 3
    rows = ledger.query("SELECT period_start, period_end FROM units WHERE dataset = 'day' ORDER BY id")
    assert [(r.period_start, r.period_end) for r in rows] == [
        ("2004-03-01", "2004-12-31"),
        ("2005-01-01", "2005-12-31"),
        ("2006-01-01", "2006-06-30"),
    ]


P, R, DONE, EMPTY, FAILED = (
    UnitState(name) for name in ("pending", "running", "done", "empty_confirmed", "failed")
)
# The README's state machine, written out here and never read from the production table (a
# test that reads the table it checks cannot fail): pending -> running -> done |
# empty_confirmed | failed; a running unit goes back to pending when its worker gives it back,
# requeues it after a transient error, or its lease expires; retry, repair and a wider plan
# put failed and settled units back in the queue. Every other pair is forbidden.
DOCUMENTED = {
    (P, R),
    (R, DONE),
    (R, EMPTY),
    (R, FAILED),
    (R, P),
    (FAILED, P),
    (DONE, P),
    (EMPTY, P),
}


@pytest.mark.parametrize("source", list(UnitState))
@pytest.mark.parametrize("target", list(UnitState))
def test_state_machine_allows_exactly_the_documented_transitions(source, target):
    if (source, target) in DOCUMENTED:
        check_transition(source, target)
        assert allowed_sources(target, {source}) == [source.value]  # the gate every UPDATE passes
    else:
        with pytest.raises(IllegalTransition):
            check_transition(source, target)
        with pytest.raises(IllegalTransition):
            allowed_sources(target, {source})


def bring_to(ledger: Ledger, state: UnitState) -> ClaimedUnit | int:
    """A fresh unit moved to `state` by the ledger's own operations: its id while pending, else
    the claim a worker got for it."""
    ledger.add_units([PlannedUnit("minute", f"U{state.value[:4].upper()}", D(2024, 1, 1), D(2024, 1, 31))])
    if state is P:
        return ledger.query("SELECT max(id) AS id FROM units")[0].id
    unit = ledger.claim("w", 60)[0]
    settle(ledger, unit, state)
    return unit


def settle(ledger: Ledger, unit: ClaimedUnit, state: UnitState) -> None:
    """What a worker does to move its claimed unit to `state` (running: nothing)."""
    stored = StoredFile("minute/ticker=U/year=2024/month=01/part.parquet", 1, "sha256:ab", 10)
    moves = {
        R: lambda: None,
        DONE: lambda: ledger.settle_done(unit, stored, True, AttemptRecord(bars=1)),
        EMPTY: lambda: ledger.settle_empty(unit, True, AttemptRecord()),
        FAILED: lambda: ledger.settle_failed(unit, AttemptRecord(error_class="not_found", error="no")),
        P: lambda: ledger.requeue(unit, AttemptRecord(error_class="http_500", error="down")),
    }
    moves[state]()


def unit_state(ledger: Ledger, unit_id: int) -> str:
    return ledger.query("SELECT state FROM units WHERE id = :id", {"id": unit_id})[0].state


@pytest.mark.parametrize("source", [P, DONE, EMPTY, FAILED])
def test_queueing_again_moves_exactly_the_documented_sources(ledger, source):
    """retry / repair / re-plan (`reset_units`) on a unit in each state at rest."""
    unit = bring_to(ledger, source)
    unit_id = unit if isinstance(unit, int) else unit.id
    if (source, P) in DOCUMENTED:
        assert ledger.reset_units("id = :id", {"id": unit_id}, {source}) == 1
        assert unit_state(ledger, unit_id) == "pending"
    else:
        with pytest.raises(IllegalTransition):
            ledger.reset_units("id = :id", {"id": unit_id}, {source})
        assert unit_state(ledger, unit_id) == source.value


@pytest.mark.parametrize("target", [DONE, EMPTY, FAILED, P])
def test_a_running_unit_moves_to_each_documented_target(ledger, target):
    assert (R, target) in DOCUMENTED
    unit = bring_to(ledger, R)
    settle(ledger, unit, target)
    assert unit_state(ledger, unit.id) == target.value
    assert ledger.query("SELECT outcome FROM unit_attempts")[0].outcome == target.value


@pytest.mark.parametrize("settled", [DONE, EMPTY, FAILED])
@pytest.mark.parametrize("again", [DONE, EMPTY, FAILED])
def test_a_settled_unit_is_never_settled_again(ledger, settled, again):
    """A late worker holding an old claim cannot move a unit from one outcome to another."""
    assert (settled, again) not in DOCUMENTED
    unit = bring_to(ledger, settled)
    with pytest.raises(LeaseLost):
        settle(ledger, unit, again)
    assert unit_state(ledger, unit.id) == settled.value
    assert ledger.query("SELECT count(*) AS n FROM unit_attempts")[0].n == 1


def test_bulk_changes_refuse_illegal_sources(ledger):
    ledger.add_units([PlannedUnit("minute", "AAPL", D(2024, 1, 1), D(2024, 1, 31))])
    with pytest.raises(IllegalTransition):
        ledger.reset_units("1 = 1", {}, {UnitState.RUNNING, UnitState.PENDING})
    assert unit_state(ledger, 1) == "pending"


def test_claims_take_each_unit_once_and_count_attempts(ledger):
    plan(ledger, ["A", "B"], "minute", D(2024, 1, 1), D(2024, 6, 30))
    first = ledger.claim("w1", 60, limit=5)
    second = ledger.claim("w2", 60, limit=100)
    assert len(first) == 5 and len(second) == 7
    assert not {u.id for u in first} & {u.id for u in second}
    assert ledger.claim("w3", 60) == []
    assert {r.attempts for r in ledger.query("SELECT attempts FROM units")} == {1}


def test_settle_records_rows_checksum_and_attempt_in_one_step(ledger):
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    unit = ledger.claim("w", 60)[0]
    ledger.settle_done(
        unit,
        StoredFile("minute/ticker=A/year=2024/month=01/part.parquet", 42, "sha256:ab", 999),
        True,
        AttemptRecord(requests=2, bytes=1234, bars=42, request_id="r1"),
        run_id="run1",
    )
    row = ledger.query("SELECT * FROM units")[0]
    assert (row.state, row.rows, row.checksum, row.bytes, row.requests, row.adjusted) == (
        "done",
        42,
        "sha256:ab",
        999,
        2,
        True,
    )
    assert row.lease_owner is None and row.fetched_at is not None
    attempt = ledger.query("SELECT * FROM unit_attempts")[0]
    assert (attempt.unit_id, attempt.outcome, attempt.requests, attempt.bars, attempt.run_id) == (
        unit.id,
        "done",
        2,
        42,
        "run1",
    )


def test_expired_lease_returns_unit_and_late_worker_cannot_settle(ledger, clock):
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    dead = ledger.claim("dead-worker", 30)[0]
    clock.advance(10)
    assert ledger.reclaim_expired() == []  # still leased
    clock.advance(25)
    assert ledger.reclaim_expired() == [("minute", "A", D(2024, 1, 1))]
    row = ledger.query("SELECT state, error_class FROM units")[0]
    assert (row.state, row.error_class) == ("pending", "lease_expired")
    alive = ledger.claim("new-worker", 30)[0]
    assert alive.attempts == 2
    with pytest.raises(LeaseLost):
        ledger.settle_empty(dead, True, AttemptRecord())
    ledger.settle_empty(alive, True, AttemptRecord())
    assert states(ledger) == {("A", "2024-01-01"): "empty_confirmed"}


def test_a_day_files_read_that_lost_its_lease_records_nothing(ledger, clock):
    """Found by a review: a flat-file day's read recorded the object's ETag before checking
    its lease, so a read whose lease ran out (its unit read again by another worker, the
    day file maybe replaced in between) replaced the newer read's record: the ETag the
    staleness check compares with would not be the staged file's."""
    ledger.add_units([PlannedUnit("minute_files", "", D(2024, 1, 2), D(2024, 1, 2))])
    late = ledger.claim("late-worker", 30)[0]
    clock.advance(35)
    ledger.reclaim_expired()
    taker = ledger.claim("new-worker", 30)[0]
    assert ledger.record_flat_file(taker, "key", "etag-new", 10, 5, "u")
    assert not ledger.record_flat_file(late, "key", "etag-old", 9, 4, "u")
    rows = ledger.query("SELECT etag, size, rows FROM flat_files")
    assert [tuple(row) for row in rows] == [("etag-new", 10, 5)]


def test_heartbeat_keeps_a_lease_alive(ledger, clock):
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    ledger.claim("w", 30)
    for _ in range(5):
        clock.advance(20)
        assert ledger.heartbeat("w", 30) == 1
        assert ledger.reclaim_expired() == []


def test_release_gives_unit_back_without_counting_the_attempt(ledger):
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    unit = ledger.claim("w", 30)[0]
    assert ledger.release(unit, undo_attempt=True)
    row = ledger.query("SELECT state, attempts, lease_owner FROM units")[0]
    assert (row.state, row.attempts, row.lease_owner) == ("pending", 0, None)


def test_ledger_uses_wal(ledger):
    assert ledger.query("PRAGMA journal_mode")[0][0] == "wal"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(SchemaTooNewError, match="newer"):
        Ledger(path)


def test_opening_a_file_that_is_not_a_ledger_is_an_input_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not sqlite at all")
    with pytest.raises(InputError, match="not a SQLite ledger"):
        Ledger(path)
    with pytest.raises(InputError, match="no ledger"):
        Ledger(tmp_path / "missing.db", create=False)


def test_read_only_connection_refuses_writes(ledger):
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    connection = open_read_only(ledger.path)
    assert connection.execute("SELECT count(*) FROM units").fetchone() == (1,)
    for statement in (
        "DELETE FROM units",
        "UPDATE units SET state = 'done'",
        "DROP TABLE units",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA journal_mode = DELETE",
    ):
        with pytest.raises(sqlite3.DatabaseError):
            connection.execute(statement)
    connection.close()
    assert ledger.query("SELECT count(*) FROM units")[0][0] == 1


def test_models_match_the_migrated_schema(ledger):
    from polyledger.ledger.models import QualityFlag, Run, Setting, Split, Unit, UnitAttempt

    with ledger.engine.connect() as connection:
        for model in (Unit, UnitAttempt, Run, Setting, Split, QualityFlag):
            columns = {r[1] for r in connection.execute(text(f"PRAGMA table_info({model.__tablename__})"))}
            assert columns == set(model.__table__.columns.keys()), model.__tablename__


def test_the_schema_head_constant_is_the_migration_scripts_head():
    """A ledger at SCHEMA_HEAD opens without reading the scripts: a new migration whose
    constant was not moved would leave every existing ledger unmigrated."""
    from polyledger.ledger.database import SCHEMA_HEAD, head_revision

    assert SCHEMA_HEAD == head_revision()


def test_a_ledger_at_the_head_opens_without_alembic(tmp_path):
    """A `run --processes` child opens a migrated ledger: alembic (its scripts, mako) is
    not imported for it, in a fresh interpreter."""
    import subprocess
    import sys

    Ledger(tmp_path / "ledger.db").close()  # created and migrated here
    probe = (
        "import sys; from polyledger.ledger import Ledger; "
        f"Ledger({str(tmp_path / 'ledger.db')!r}).close(); "
        "print(sorted(m for m in ('alembic', 'mako') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_wider_plan_widens_clipped_units_and_requeues_settled_ones(ledger):
    plan(ledger, ["A"], "minute", D(2024, 1, 10), D(2024, 2, 15))
    for unit in ledger.claim("w", 60, limit=2):
        ledger.settle_empty(unit, True, AttemptRecord())
    result = plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 2, 10))
    assert (result.added, result.widened) == (0, 1)
    rows = ledger.query("SELECT period, period_start, period_end, state FROM units ORDER BY id")
    assert [(r.period, r.period_start, r.period_end, r.state) for r in rows] == [
        ("2024-01", "2024-01-01", "2024-01-31", "pending"),  # widened: fetched whole again
        ("2024-02", "2024-02-01", "2024-02-15", "empty_confirmed"),  # already covers the new plan
    ]

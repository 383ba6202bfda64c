"""A process that dies leaves a true ledger: the attempt it lost is a row in
`unit_attempts`, its run's counters are as of its last heartbeat, and its run is closed as
`lost` when its leases are reclaimed (it was once left open with zero counters)."""

from __future__ import annotations

import datetime as dt

import pytest
from support import LedgerClock

from polyledger.ledger import AttemptRecord, Ledger
from polyledger.plan import plan

D = dt.date


@pytest.fixture
def clock() -> LedgerClock:
    return LedgerClock()


@pytest.fixture
def ledger(tmp_path, clock):
    with Ledger(tmp_path / "ledger.db", clock=clock) as opened:
        yield opened


def _start(ledger: Ledger, run_id: str, owner: str) -> None:
    ledger.start_run(run_id, workers=1, rate=1.0, adjusted=False, base_url="http://x", owner=owner)


def test_a_dead_runs_lost_attempts_are_rows_and_its_run_is_closed_as_lost(ledger, clock):
    plan(ledger, ["A", "B"], "minute", D(2024, 1, 1), D(2024, 3, 31))
    _start(ledger, "dead-run", owner="host:1:dead")
    _start(ledger, "live-run", owner="host:2:live")
    done = ledger.claim("host:1:dead", 60, limit=1)[0]
    ledger.settle_empty(done, False, AttemptRecord(requests=1), run_id="dead-run")
    held = ledger.claim("host:1:dead", 60, limit=2)
    clock.advance(10)
    ledger.run_alive("dead-run", units_settled=1, requests=3)  # its last heartbeat
    last_seen = ledger.query("SELECT last_seen_at FROM runs WHERE id = 'dead-run'")[0].last_seen_at
    live = ledger.claim("host:2:live", 600, limit=1)[0]  # a longer lease: still alive later
    clock.advance(120)  # the dead run's leases ran out; it never beat again

    reclaimed = ledger.reclaim_expired()

    assert sorted((t, p) for _, t, p in reclaimed) == sorted((u.ticker, u.period_start) for u in held)
    attempts = ledger.query(
        "SELECT unit_id, run_id, outcome, error_class, started_at, ended_at FROM unit_attempts "
        "WHERE error_class = 'lease_expired' ORDER BY unit_id"
    )
    assert [(a.unit_id, a.run_id, a.outcome) for a in attempts] == [
        (u.id, "dead-run", "pending") for u in sorted(held, key=lambda u: u.id)
    ]
    assert all(a.started_at < a.ended_at for a in attempts)
    # every attempt counted on a unit is a row: units taken back included
    mismatched = ledger.query(
        "SELECT u.id FROM units u LEFT JOIN unit_attempts a ON a.unit_id = u.id "
        "WHERE u.state != 'running' GROUP BY u.id, u.attempts HAVING count(a.id) != u.attempts"
    )
    assert mismatched == []
    runs = {r.id: r for r in ledger.query("SELECT * FROM runs")}
    dead = runs["dead-run"]
    assert (dead.outcome, dead.ended_at, dead.units_settled, dead.requests) == ("lost", last_seen, 1, 3)
    assert (runs["live-run"].outcome, runs["live-run"].ended_at) == (None, None)  # its lease is alive
    assert ledger.query(f"SELECT state FROM units WHERE id = {live.id}")[0].state == "running"
    assert ledger.reclaim_expired() == []  # nothing twice
    assert len(ledger.query("SELECT id FROM unit_attempts WHERE error_class = 'lease_expired'")) == 2


def test_a_run_that_ends_late_after_being_taken_for_dead_records_its_own_end(ledger, clock):
    """A process whose ledger was unreachable for longer than a lease is taken for dead;
    if it comes back and ends, its own end is the truth."""
    plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    _start(ledger, "slow-run", owner="host:3:slow")
    ledger.claim("host:3:slow", 60, limit=1)
    clock.advance(120)
    ledger.reclaim_expired()
    assert ledger.query("SELECT outcome FROM runs")[0].outcome == "lost"
    ledger.run_alive("slow-run", units_settled=9, requests=9)  # a closed run's row is not reopened
    assert ledger.query("SELECT units_settled FROM runs")[0].units_settled == 0
    ledger.end_run("slow-run", "finished", 0, 4)
    row = ledger.query("SELECT outcome, requests, ended_at, last_seen_at FROM runs")[0]
    assert (row.outcome, row.requests) == ("finished", 4) and row.ended_at == row.last_seen_at


def test_an_open_run_of_the_previous_schema_upgrades_and_is_reclaimed(tmp_path, clock):
    """A ledger made before runs had an owner (schema 0005) upgrades in place; a unit held by
    an old run is taken back with its lost attempt recorded (charged to no run: the old row
    cannot say which run held it) and the old run's row is left as it was."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    from polyledger.ledger.database import _migrations_config

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = _migrations_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.execute(
            sql(
                "INSERT INTO runs (id, started_at, host, pid, workers, rate, adjusted, base_url, "
                "units_settled, requests) VALUES ('old', '2025-12-31T00:00:00.000Z', 'h', 1, 1, 1, 0, 'u', 0, 0)"
            )
        )
    engine.dispose()
    with Ledger(path, clock=clock) as ledger:
        plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 1, 31))
        ledger.claim("h:1:old", 60, limit=1)
        clock.advance(120)
        assert len(ledger.reclaim_expired()) == 1
        attempt = ledger.query("SELECT run_id, error_class FROM unit_attempts")[0]
        assert (attempt.run_id, attempt.error_class) == (None, "lease_expired")
        old = ledger.query("SELECT outcome, ended_at, owner, last_seen_at FROM runs")[0]
        assert tuple(old) == (None, None, None, None)

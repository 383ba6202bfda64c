"""A run killed with SIGKILL loses nothing: its leases expire and the next run finishes. A
ledger copy (`export`/`import`) killed midway leaves no ledger that looks whole."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    cli_command,
    ledger_states,
    python_env,
    read_dataset,
    run_cli,
    truth,
    wait_for,
    write_universe,
)

from polyledger.ledger import Ledger
from polyledger.storage import BarStore, unit_relative_path
from polyledger.testing import StandInServer

D = dt.date
TICKERS = ["AAPL", "BRK.B", "SIRI", "PLUG", "MID1", "MID2"]


def test_kill_9_mid_run_then_next_run_completes(work, market):
    start, end = D(2023, 1, 1), D(2023, 12, 31)
    write_universe(work / "universe.csv", TICKERS)
    assert run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end).code == 0
    ledger = work / "ledger.db"
    with StandInServer(market, api_keys=(API_KEY,), latency=0.1, page_cap=4_000) as server:
        command = cli_command(
            "run", "--base-url", server.url, "--workers", "4", "--rate", "500", "--lease-seconds", "2"
        )
        victim = subprocess.Popen(
            command, cwd=work, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            assert wait_for(lambda: ledger_states(ledger).get("done", 0) >= 8, timeout=60)
            victim.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no cleanup runs
            victim.wait(timeout=10)
        finally:
            if victim.poll() is None:
                victim.kill()
        after_kill = ledger_states(ledger)
        assert after_kill.get("running", 0) >= 1, after_kill  # units orphaned mid-flight
        assert after_kill.get("pending", 0) >= 1

        result = run_cli(
            "run", "--base-url", server.url, "--workers", "4", "--rate", "500", "--lease-seconds", "2"
        )
        assert result.code == 0, result.err + result.out

    assert set(ledger_states(ledger)) <= {"done", "empty_confirmed"}
    assert not [p for p in (work / "data").rglob("*") if ".tmp-" in p.name]
    expected = [truth(market, "minute", t, start, end) for t in TICKERS]
    import polars as pl

    assert_frame_equal(read_dataset(work / "data", "minute"), pl.concat(expected).sort("ticker", "timestamp"))
    with sqlite3.connect(ledger) as connection:
        retried = connection.execute(
            "SELECT count(*) FROM units WHERE error_class IS NULL AND attempts = 2"
        ).fetchone()[0]
    assert retried >= after_kill["running"]  # the orphans were taken back and finished
    with sqlite3.connect(ledger) as connection:
        # every attempt is a row, the killed one's lost attempts included
        uncounted = connection.execute(
            "SELECT count(*) FROM (SELECT u.id FROM units u LEFT JOIN unit_attempts a ON a.unit_id = u.id "
            "GROUP BY u.id, u.attempts HAVING count(a.id) != u.attempts)"
        ).fetchone()[0]
        lost = connection.execute(
            "SELECT count(*) FROM unit_attempts WHERE error_class = 'lease_expired'"
        ).fetchone()[0]
        runs = connection.execute(
            "SELECT outcome, ended_at IS NOT NULL FROM runs ORDER BY started_at"
        ).fetchall()
    assert uncounted == 0 and lost >= after_kill["running"]
    assert runs == [("lost", 1), ("finished", 1)]  # the killed run is closed, not left open


def test_the_next_run_removes_a_killed_writers_temporary_beside_its_unit_only(work, market):
    """A process killed mid-write leaves `.tmp-*` in the folder of a unit it held. The run that
    takes that unit back removes it, looking only in the folders of units it took back (a
    data folder of hundreds of thousands of files is never walked at start-up)."""
    write_universe(work / "universe.csv", ["SIRI"])
    assert (
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-03-31").code == 0
    )
    with Ledger(work / "ledger.db") as ledger:
        held = ledger.claim("killed-process", 60, limit=1)[0]
    with sqlite3.connect(work / "ledger.db") as connection:  # its lease ran out long ago
        connection.execute(
            "UPDATE units SET lease_expires_at = '2020-01-01T00:00:00.000Z' WHERE state = 'running'"
        )
    folder = (work / "data" / unit_relative_path(held.dataset, held.ticker, held.period_start)).parent
    folder.mkdir(parents=True)
    leftover = folder / ".tmp-0123abcd-part.parquet.partial"
    leftover.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    elsewhere = work / "data" / "minute" / "ticker=OTHER" / ".tmp-89abcdef-part.parquet.partial"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"not beside a unit taken back")

    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
    assert not leftover.exists()
    assert (folder / "part.parquet").exists()
    assert elsewhere.exists()  # left for `repair`, which walks everything on purpose
    repaired = run_cli("repair")
    assert "1 stray temporaries removed" in repaired.out and not elsewhere.exists()


def test_a_young_temporary_may_belong_to_a_live_writer(tmp_path):
    store = BarStore(tmp_path)
    unit = unit_relative_path("minute", "SIRI", D(2023, 1, 1))
    (tmp_path / unit).parent.mkdir(parents=True)
    young = (tmp_path / unit).with_name(".tmp-feedface-part.parquet.partial")
    young.write_bytes(b"being written")
    assert store.clean_temporaries([unit], older_than=30) == 0 and young.exists()
    assert store.clean_temporaries([unit], older_than=0) == 1 and not young.exists()


# `polyledger export`'s copy (argv: source, target), killed as kill -9 would (no handler
# runs) when it reads batch N of a table (argv: "table:N"), 100 rows a batch
KILLED_COPY = """
import os, sys
from polyledger.ledger import transfer

table, number = sys.argv[3].split(":")
read = transfer._Snapshot.batches

def killed_midway(snapshot, model, batch):
    for count, rows in enumerate(read(snapshot, model, batch)):
        if model.__tablename__ == table and count == int(number):
            os._exit(137)
        yield rows

transfer._Snapshot.batches = killed_midway
transfer.copy_ledger(sys.argv[1], sys.argv[2], batch=100)
"""


def _units(path) -> int:  # type: ignore[no-untyped-def]
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM units").fetchone()[0]


@pytest.mark.parametrize("target", ["new", "empty"])
def test_export_killed_mid_copy_does_not_leave_a_ledger_that_looks_whole(work, target):
    """`polyledger export --to copy.db` (and `import`, the same copy) committed the units in
    batches: killed between two (kill -9, power loss, the OOM killer), it left copy.db with
    the first 100 of 480 units, which `status`, `audit` and `run` took for a whole ledger,
    and a second export was refused as "not empty" (found by a review). A new SQLite ledger
    is now written under a temporary name and renamed when whole; an empty one made before
    is filled in one transaction, which SQLite takes back when the copy dies."""
    write_universe(work / "u.csv", [f"T{number:03d}" for number in range(40)])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-12-31").code == 0
    if target == "empty":
        Ledger(work / "copy.db").close()

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_COPY, "ledger.db", "copy.db", "units:1"],  # 100 units written
        cwd=work,
        env=python_env(),
        timeout=120,
    )
    assert killed.returncode == 137

    status = run_cli("status", "--ledger", "copy.db")
    if target == "new":  # no ledger at all; only the temporary, named as none is
        assert status.code == 2 and "no ledger at copy.db" in status.err, status.out
        left = sorted(path.name for path in work.iterdir() if path.name.startswith("copy.db"))
        assert left and all(".partial" in name for name in left), left
    else:  # the empty ledger it was
        assert status.code == 0 and _units(work / "copy.db") == 0

    again = run_cli("export", "--to", "copy.db")
    assert again.code == 0, again.err
    assert "480 units" in again.out and _units(work / "copy.db") == 480


def test_an_interrupted_copy_leaves_nothing_behind(work, monkeypatch):
    """Ctrl-C (or any error) during `export` into a new SQLite file: no copy.db and no
    temporary; into an empty ledger: the ledger as empty as it was."""
    from polyledger.ledger import transfer

    write_universe(work / "u.csv", [f"T{number:03d}" for number in range(40)])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-12-31").code == 0
    read = transfer._Snapshot.batches

    def interrupted_after_the_first_batch(snapshot, model, batch):  # type: ignore[no-untyped-def]
        for number, rows in enumerate(read(snapshot, model, 100)):
            if number == 1:
                raise KeyboardInterrupt
            yield rows

    monkeypatch.setattr(transfer._Snapshot, "batches", interrupted_after_the_first_batch)
    before = sorted(path.name for path in work.iterdir())
    result = run_cli("export", "--to", "copy.db")
    assert (result.code, result.err) == (130, "interrupted\n")
    assert sorted(path.name for path in work.iterdir()) == before

    Ledger(work / "empty.db").close()
    assert run_cli("export", "--to", "empty.db").code == 130
    assert _units(work / "empty.db") == 0


def test_a_copy_is_of_one_moment_whatever_is_written_to_the_source_meanwhile(work, monkeypatch):
    """`export` read each table in a transaction of its own: a write to the source between
    two tables (a `plan`, a `retry` from another terminal) gave the copy attempts of units it
    lacked, and the copy failed on the foreign key (found by a review). Every table is now
    read in one read transaction: the copy is the ledger as it was when the copy began."""
    from polyledger.ledger import AttemptRecord, PlannedUnit, transfer

    write_universe(work / "u.csv", ["AAA"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-03-31").code == 0
    read = transfer._Snapshot.batches

    def a_plan_meanwhile(snapshot, model, batch):  # type: ignore[no-untyped-def]
        yield from read(snapshot, model, batch)
        if model.__tablename__ == "units":  # after the units, before their attempts
            with Ledger(work / "ledger.db") as other:
                other.add_units([PlannedUnit("minute", "BBB", dt.date(2024, 1, 1), dt.date(2024, 1, 31))])
                for unit in other.claim("w", 60, limit=10):  # a run settling months meanwhile
                    other.settle_empty(unit, True, AttemptRecord())

    monkeypatch.setattr(transfer._Snapshot, "batches", a_plan_meanwhile)
    result = run_cli("export", "--to", "copy.db")
    assert result.code == 0, result.err
    with sqlite3.connect(work / "copy.db") as db:
        assert db.execute("SELECT count(*) FROM units").fetchone()[0] == 3  # AAA's three months
        orphans = "SELECT count(*) FROM unit_attempts WHERE unit_id NOT IN (SELECT id FROM units)"
        assert db.execute(orphans).fetchone()[0] == 0
    assert _units(work / "ledger.db") == 4  # the source has BBB's month now

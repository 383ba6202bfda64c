"""`repair` racing a run, and quarantines racing each other: repair acts only on units that
are still as its check found them, held under its own lease while their files move, and a
file moved to `.quarantine/` never replaces another one there. (Brought over from the
storage review, branch review-storage d9f397f, `tests/test_review_storage.py`.)"""

from __future__ import annotations

import datetime as dt
import errno

import pytest
from support import (
    LedgerClock,
    fetch_one_again,
    one_bar,
    run_cli,
    settle_one_done,
    unit_state,
    write_one_fenced,
)
from test_postgres import admin_url, new_database, pg_url  # noqa: F401 - fixtures (skip without a server)

from polyledger.checks.files import deep_check
from polyledger.errors import StorageError
from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit, UnitState
from polyledger.storage import QUARANTINE, BarStore
from polyledger.storage.local import LocalStore

D = dt.date
FEB = D(2024, 2, 1)
STAMP = "20260101T000000Z"
LEASE = 600.0  # repair's own (checks/files.py LEASE)


# --- repair acting on findings a run has made stale ------------------------------------------


def _run_between_check_and_repair(monkeypatch, between) -> None:  # type: ignore[no-untyped-def]
    """`repair` = deep_check, then act on its findings: `between()` runs in that gap (a run on
    another host that started after repair's "no run holds units" check)."""
    import polyledger.checks.files as files

    real = files.deep_check

    def checked_then_raced(ledger, store, checksums=True):  # type: ignore[no-untyped-def]
        findings = real(ledger, store, checksums)
        between()
        return findings

    monkeypatch.setattr(files, "deep_check", checked_then_raced)


def test_repair_never_moves_away_the_file_a_run_just_wrote_for_a_withdrawn_finding(work, monkeypatch):
    """A `withdrawn_file` finding (the file of an empty_confirmed unit) whose unit a run
    fetched again with bars and settled `done` between repair's check and its action: the
    unit is no longer empty_confirmed, so repair leaves it and the run's new file alone
    (moving it would leave a `done` unit without its file, which plain `audit` calls
    complete: a silent hole)."""
    store = BarStore(work / "data")
    with Ledger(work / "ledger.db") as ledger:
        ledger.add_units([PlannedUnit("minute", "ALFA", FEB, D(2024, 2, 29))])
        (unit,) = ledger.claim("earlier-run", 60.0, 1)
        assert ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(), None)], True) == [True]
        store.write_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)  # a withdrawn file
    written = {}

    def a_run_fetches_it_again() -> None:
        with Ledger(work / "ledger.db") as run:
            assert run.reset_settled("minute", ["ALFA"]) == 1
            written["path"] = fetch_one_again(run, work / "data", "host-b", 2.0).path

    _run_between_check_and_repair(monkeypatch, a_run_fetches_it_again)
    result = run_cli("repair")

    assert result.code == 0, result.err
    with Ledger(work / "ledger.db") as ledger:
        state = unit_state(ledger, unit.id)
    assert not (state == "done" and not store.exists(written["path"])), (
        f"the unit is {state!r} while the file its run just wrote was moved to .quarantine/ by repair"
    )


def test_repair_never_moves_away_the_file_of_a_unit_a_run_is_writing(work, monkeypatch):
    """A damaged file's finding (here checksum_mismatch) whose unit was queued again and
    claimed by a run since the check, the run's new file written but not yet settled: repair
    cannot hold the unit (it is not `done` as it was seen), so it leaves its file where it
    is; the run then settles `done` with its file in place."""
    store = BarStore(work / "data")
    with Ledger(work / "ledger.db") as ledger:
        alfa, stored = settle_one_done(ledger, store, "ALFA", 1.0)
        settle_one_done(ledger, store, "BRAVO", 2.0)
    path = store.path_of(stored.path)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF
    path.write_bytes(bytes(damaged))
    run = Ledger(work / "ledger.db")
    writing = {}

    def a_run_claims_and_writes_it() -> None:
        assert run.reset_settled("minute", ["ALFA"]) == 1  # e.g. sync: a split announced since
        (unit,) = run.claim("host-b", 60.0, 1)
        writing["unit"] = unit
        writing["stored"] = write_one_fenced(run, work / "data", unit, 3.0)

    _run_between_check_and_repair(monkeypatch, a_run_claims_and_writes_it)
    try:
        result = run_cli("repair")
        settled = run.settle_fetched(
            [FetchedUnit(writing["unit"], AttemptRecord(bars=1), writing["stored"])], True
        )
    finally:
        run.close()

    assert result.code == 0, result.err
    with Ledger(work / "ledger.db") as ledger:
        state = unit_state(ledger, alfa)
    assert not (settled == [True] and state == "done" and not store.exists(stored.path)), (
        "repair moved the file a run had just written to .quarantine/; the run then settled its unit done"
    )


def test_repair_never_requeues_a_unit_a_run_made_good_since_the_check(work, monkeypatch):
    """The same stale finding when the run settled the unit `done` before repair acts: the
    unit is `done` again but not as it was seen (another file, another checksum), so repair
    neither queues it again nor moves its fresh file to .quarantine/."""
    store = BarStore(work / "data")
    with Ledger(work / "ledger.db") as ledger:
        alfa, stored = settle_one_done(ledger, store, "ALFA", 1.0)
        settle_one_done(ledger, store, "BRAVO", 2.0)
    store.path_of(stored.path).unlink()  # a missing file: the unit is queued again, rightly

    def a_run_fetches_it_again() -> None:
        with Ledger(work / "ledger.db") as run:
            assert run.reset_settled("minute", ["ALFA"]) == 1
            fetch_one_again(run, work / "data", "host-b", 3.0)

    _run_between_check_and_repair(monkeypatch, a_run_fetches_it_again)
    result = run_cli("repair")

    assert result.code == 0, result.err
    with Ledger(work / "ledger.db") as ledger:
        state = unit_state(ledger, alfa)
    assert state == "done" and store.exists(stored.path), (
        f"the unit a run had just fetched is {state!r} again and its fresh file was moved to .quarantine/"
    )


# --- repair's holds in the ledger, on SQLite and PostgreSQL ----------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, work):  # type: ignore[no-untyped-def]
    """A fresh ledger's location: a SQLite file, or a PostgreSQL database (skipped without
    `POLYLEDGER_TEST_PG_URL`)."""
    if request.param == "sqlite":
        return work / "ledger.db"
    return request.getfixturevalue("pg_url")


def _row(ledger: Ledger, unit_id: int):  # type: ignore[no-untyped-def]
    return ledger.query(
        "SELECT state, attempts, lease_owner, lease_token, lease_expires_at FROM units WHERE id = :id",
        {"id": unit_id},
    )[0]


def test_repair_holds_only_units_still_as_seen_without_counting_an_attempt(work, location):
    """`hold_unchanged` takes, in one transaction, the units still exactly as the check saw
    them (`done` with the same file and attempts; `empty_confirmed`) into `running` under
    repair's lease, where no run's claim gets them; a unit a run fetched again since is not
    taken. The hold is no attempt, and giving the units back conditions on the lease:
    damaged ones go to pending with a fresh budget, withdrawn ones back to empty_confirmed."""
    store = BarStore(work / "data")
    with Ledger(location) as ledger:
        alfa, _ = settle_one_done(ledger, store, "ALFA", 1.0)
        bravo, _ = settle_one_done(ledger, store, "BRAVO", 2.0)
        ledger.add_units([PlannedUnit("minute", "EMPTY", FEB, D(2024, 2, 29))])
        (empty,) = ledger.claim("setup", 60.0, 1)
        assert ledger.settle_fetched([FetchedUnit(empty, AttemptRecord(), None)], True) == [True]
        seen = {f.unit_id: f.seen for f in deep_check(ledger, store) if f.seen is not None}
        assert seen == {}  # every file as written: nothing to do
        store.write_unit("minute", "EMPTY", FEB, one_bar("EMPTY", 9.0), adjusted=True)  # a withdrawn file
        for ticker in ("ALFA", "BRAVO"):
            (store.root / "minute" / f"ticker={ticker}" / "year=2024" / "month=02" / "part.parquet").unlink()
        seen = {f.unit_id: f.seen for f in deep_check(ledger, store) if f.seen is not None}
        assert set(seen) == {alfa, bravo, empty.id}
        # BRAVO fetched again by a run since the check: not as seen any more
        assert ledger.reset_settled("minute", ["BRAVO"]) == 1
        (again,) = ledger.claim("host-b", 60.0, 1)
        stored = store.write_unit("minute", "BRAVO", FEB, one_bar("BRAVO", 3.0), adjusted=True)
        assert ledger.settle_fetched([FetchedUnit(again, AttemptRecord(bars=1), stored)], True) == [True]

        held = ledger.hold_unchanged(list(seen.values()), "repair:test", "tok", LEASE)

        assert held == sorted([alfa, empty.id])
        for unit_id in held:
            row = _row(ledger, unit_id)
            assert (row.state, row.attempts, row.lease_owner, row.lease_token) == (
                "running",
                1,
                "repair:test",
                "tok",
            )
        assert _row(ledger, bravo).state == "done"
        assert ledger.claim("host-c", 60.0, 10) == []  # nothing pending: the held units are no run's
        assert ledger.hold_unchanged(list(seen.values()), "repair:other", "tok2", 60.0) == []
        assert ledger.release_held([alfa, empty.id], "wrong-token", UnitState.PENDING) == 0
        assert ledger.release_held([alfa], "tok", UnitState.PENDING) == 1
        assert ledger.release_held([empty.id], "tok", UnitState.EMPTY_CONFIRMED) == 1
        a, e = _row(ledger, alfa), _row(ledger, empty.id)
        assert (a.state, a.attempts, a.lease_owner, a.lease_token) == ("pending", 0, None, None)
        assert (e.state, e.attempts, e.lease_owner, e.lease_token) == ("empty_confirmed", 1, None, None)
        attempts = ledger.query("SELECT count(*) AS n FROM unit_attempts WHERE unit_id = :id", {"id": alfa})
        assert attempts[0].n == 1  # the setup's only: the hold was no attempt


def test_units_a_dead_repair_held_go_back_to_the_queue_when_its_lease_runs_out(work, location):
    """Repair is in no runs table: if it dies holding units, only its lease's expiry takes
    them back (to pending: fetched again), never sooner."""
    store = BarStore(work / "data")
    clock = LedgerClock()
    with Ledger(location, clock=clock) as ledger:
        alfa, _ = settle_one_done(ledger, store, "ALFA", 1.0)
        (store.root / "minute" / "ticker=ALFA" / "year=2024" / "month=02" / "part.parquet").unlink()
        (finding,) = deep_check(ledger, store)
        assert ledger.hold_unchanged([finding.seen], "repair:dead", "tok", LEASE) == [alfa]
        clock.advance(LEASE - 1)
        assert ledger.reclaim_expired() == [] and ledger.holds_unit(alfa, "tok")
        clock.advance(2)
        assert not ledger.holds_unit(alfa, "tok")
        assert ledger.reclaim_expired() == [("minute", "ALFA", FEB)]
        assert _row(ledger, alfa).state == "pending"
        assert ledger.release_held([alfa], "tok", UnitState.PENDING) == 0  # no longer its


def test_a_repair_whose_hold_lapsed_never_moves_the_file_of_a_unit_taken_back(work):
    """Repair held two damaged units; it stalled past its lease (a suspended laptop) after
    the first file moved, a run took both back and wrote the second one's new file. Repair
    goes on: the second unit is no longer held, so its (new) file stays where it is and the
    finding is counted left alone; nothing is given back that repair no longer holds."""
    from polyledger.checks.files import repair

    store = BarStore(work / "data")
    clock = LedgerClock()
    with Ledger(work / "ledger.db", clock=clock) as ledger:
        alfa, _ = settle_one_done(ledger, store, "ALFA", 1.0)
        bravo, bravo_file = settle_one_done(ledger, store, "BRAVO", 2.0)
        for path in (store.root / "minute").rglob("part.parquet"):
            damaged = bytearray(path.read_bytes())
            damaged[len(damaged) // 3] ^= 0xFF
            path.write_bytes(bytes(damaged))
        findings = deep_check(ledger, store)
        assert {f.kind for f in findings} == {"checksum_mismatch"} and len(findings) == 2
        real_quarantine = store.quarantine
        written = {}

        def stalled_then_taken_back(relative: str, stamp: str | None = None) -> str:
            moved = real_quarantine(relative, stamp)
            if not written:
                clock.advance(LEASE + 1)  # repair stalls past its lease
                assert len(ledger.reclaim_expired()) == 2  # a run takes both units back...
                claimed = {unit.ticker: unit for unit in ledger.claim("host-b", 60.0, 2)}
                written["stored"] = store.write_unit(  # ...and writes BRAVO's new file
                    "minute",
                    "BRAVO",
                    FEB,
                    one_bar("BRAVO", 3.0),
                    adjusted=True,
                    still_ours=lambda: ledger.still_holds(claimed["BRAVO"]),
                )
            return moved

        store.quarantine = stalled_then_taken_back  # type: ignore[method-assign]
        result = repair(ledger, store, findings)

        assert written and store.exists(bravo_file.path), "repair moved the file of a unit it no longer held"
        assert store.rows_and_checksum(bravo_file.path)[1] == written["stored"].checksum
        assert len(result.quarantined) == 1 and result.skipped == 1 and result.requeued == 0
        assert {unit_state(ledger, alfa), unit_state(ledger, bravo)} == {"running"}  # the run's, untouched


def test_a_repair_stopped_by_a_failed_move_leaves_no_unit_held(work, monkeypatch):
    """A move that fails mid-batch stops repair (one line, exit != 0), and the units it held
    are given back at once: the damaged ones pending (fetched again, their files where
    they were or in .quarantine/), none left `running` until its lease runs out (a run
    would wait on them) and none `done` without its file."""
    store = BarStore(work / "data")
    with Ledger(work / "ledger.db") as ledger:
        ids = [settle_one_done(ledger, store, ticker, 1.0)[0] for ticker in ("ALFA", "BRAVO", "CHARLIE")]
    for path in (store.root / "minute").rglob("part.parquet"):
        damaged = bytearray(path.read_bytes())
        damaged[len(damaged) // 3] ^= 0xFF
        path.write_bytes(bytes(damaged))
    real_move = LocalStore.move
    moves: list[str] = []

    def second_move_fails(self, source, target, before_remove=None):  # type: ignore[no-untyped-def]
        moves.append(source)
        if len(moves) == 2:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self.path_of(source)))
        real_move(self, source, target, before_remove)

    monkeypatch.setattr(LocalStore, "move", second_move_fails)
    result = run_cli("repair")

    assert result.code != 0 and len(moves) == 2
    with Ledger(work / "ledger.db") as ledger:
        states = {unit_state(ledger, unit_id) for unit_id in ids}
    assert states == {"pending"}, f"after a failed repair its units are {states}"


# --- quarantines racing each other (local folder) ---------------------------------------------


def test_two_quarantines_racing_under_one_stamp_never_replace_each_other_locally(work, monkeypatch):
    """Host A looks: `<stamp>/<path>` is free; before it moves, host B quarantines the unit's
    file there under the same stamp (repair's one stamp, the same second) and a run writes
    the unit's new file; A's move must then take another folder (`-2`), never replace B's
    quarantined copy (a plain `os.replace` would, silently)."""
    store_a, store_b = BarStore(work / "data"), BarStore(work / "data")
    first = store_a.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)
    store_a.put_unit(first)
    target = f"{QUARANTINE}/{STAMP}/{first.file.path}"
    real_exists = store_a.exists
    raced: list = []

    def exists_then_raced(relative: str) -> bool:
        answer = real_exists(relative)
        if relative == target and not raced:
            raced.append(store_b.quarantine(first.file.path, STAMP))  # B, same stamp
            second = store_b.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 2.0), adjusted=True)
            store_b.put_unit(second)  # a run's new file for the unit
        return answer

    monkeypatch.setattr(store_a, "exists", exists_then_raced)
    try:
        store_a.quarantine(first.file.path, STAMP)
    except StorageError:
        pass
    assert raced == [target]
    assert store_a.rows_and_checksum(target)[1] == first.file.checksum, (
        f"{target}, host B's quarantined copy, was replaced by host A's move"
    )


def test_sequential_quarantines_in_one_second_keep_both_copies_locally(work):
    """Control: one after the other, two quarantines under one stamp keep both copies
    (`-2`): the stamp's resolution alone loses nothing."""
    store = BarStore(work / "data")
    one = store.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)
    store.put_unit(one)
    first = store.quarantine(one.file.path, STAMP)
    two = store.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 2.0), adjusted=True)
    store.put_unit(two)
    second = store.quarantine(two.file.path, STAMP)
    assert first != second
    assert store.rows_and_checksum(first)[1] == one.file.checksum
    assert store.rows_and_checksum(second)[1] == two.file.checksum

"""A dead host stalls little: a run killed with -9 keeps its units only until the runs
still going have watched it miss several heartbeats (`fetch/silence.py`), not until its
leases run out; a live run, however slow its requests, never loses a unit that way.

The rule on a fake clock (the watch alone, then the ledger on SQLite and PostgreSQL), then
real processes: three `run`s on one PostgreSQL ledger, one killed with -9 and one held
inside a request for longer than the silence window."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading

import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    LedgerClock,
    cli_command,
    python_env,
    read_dataset,
    truth,
    wait_for,
    write_universe,
)
from test_postgres import admin_url, new_database  # noqa: F401 - fixtures

from polyledger.errors import LeaseLost
from polyledger.fetch.silence import SILENT_BEATS, SilenceWatch
from polyledger.ledger import AttemptRecord, Ledger
from polyledger.plan import plan
from polyledger.testing import Listing, StandInServer, SyntheticMarket

D = dt.date
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
LEASE = 600.0  # leases far longer than the test: only the silence rule can take units back


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# --- the watch -------------------------------------------------------------------------


def test_a_run_is_silent_after_the_whole_window_of_regular_looks_and_not_one_beat_earlier():
    watch = SilenceWatch(LEASE)
    assert (watch.beat, watch.window) == (2.0, 2.0 * SILENT_BEATS)
    for beat in range(SILENT_BEATS):
        watch.observe(_at(beat * watch.beat), {"dead": "seen-once"})
        assert watch.silent(_at(beat * watch.beat)) == {}
    watch.observe(_at(SILENT_BEATS * watch.beat), {"dead": "seen-once"})
    assert watch.silent(_at(SILENT_BEATS * watch.beat)) == {"dead": "seen-once"}


def test_a_run_that_keeps_beating_is_never_silent():
    watch = SilenceWatch(LEASE)
    for beat in range(100):
        watch.observe(_at(beat * watch.beat), {"slow": f"beat-{beat}"})
    assert watch.silent(_at(100 * watch.beat)) == {}


def test_a_watcher_that_looked_late_counts_again_and_a_stale_one_sees_nobody_silent():
    """A gap in the watcher's own looks (its ledger locked, its connection dropped, its
    process stalled) is no evidence against anyone: everyone may have been cut off alike."""
    watch = SilenceWatch(LEASE)
    watch.observe(_at(0), {"other": "same"})
    back = watch.max_gap + 1  # this watcher was away longer than a gap: it counts again
    for beat in range(SILENT_BEATS):
        watch.observe(_at(back + beat * watch.beat), {"other": "same"})
        assert watch.silent(_at(back + beat * watch.beat)) == {}
    last = back + SILENT_BEATS * watch.beat
    watch.observe(_at(last), {"other": "same"})
    assert watch.silent(_at(last)) == {"other": "same"}
    # the same view, asked about long after the last look: stale, nobody is silent
    assert watch.silent(_at(last + watch.max_gap + 1)) == {}


def test_a_run_seen_again_after_it_held_nothing_counts_from_then():
    watch = SilenceWatch(LEASE)
    for beat in range(SILENT_BEATS):
        watch.observe(_at(beat * watch.beat), {"a": "x"})
    watch.observe(_at(SILENT_BEATS * watch.beat), {})  # it held nothing (or ended)
    watch.observe(_at((SILENT_BEATS + 1) * watch.beat), {"a": "x"})
    assert watch.silent(_at((SILENT_BEATS + 1) * watch.beat)) == {}


def test_no_window_as_long_as_the_lease_the_lease_alone_decides():
    short = SilenceWatch(4.0)  # beat 1 s: five beats are longer than the lease
    assert short.window is None
    for second in range(30):
        short.observe(_at(second), {"dead": "x"})
    assert short.silent(_at(29)) == {}
    assert SilenceWatch(LEASE, silent_beats=0).window is None


# --- the ledger, on both backends --------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return tmp_path / "ledger.db"
    return request.getfixturevalue("new_database")()


def _start(ledger: Ledger, run_id: str, owner: str) -> None:
    ledger.start_run(run_id, workers=1, rate=1.0, adjusted=False, base_url="http://x", owner=owner)


def _look(ledger: Ledger, clock: LedgerClock, watch: SilenceWatch) -> None:
    """What the watcher's heartbeat thread does after each of its beats."""
    watch.observe(clock(), ledger.runs_last_seen("watcher"))


def _watch_for(ledger: Ledger, clock: LedgerClock, watch: SilenceWatch, beats: int, *alive: str) -> None:
    """`beats` heartbeats of the runs `alive` (the others stay silent), the watcher looking
    after each."""
    for _ in range(beats):
        clock.advance(watch.beat)
        for run_id in alive:
            ledger.run_alive(run_id, units_settled=0, requests=0)
        _look(ledger, clock, watch)


def test_a_silent_runs_units_go_back_and_a_beating_runs_stay_its_own(location):
    clock = LedgerClock()
    with Ledger(location, clock=clock) as ledger:
        plan(ledger, ["A", "B", "C"], "minute", D(2024, 1, 1), D(2024, 3, 31))
        for run_id in ("dead", "slow", "watcher"):
            _start(ledger, f"{run_id}-run", owner=run_id)
        held = ledger.claim("dead", LEASE, limit=3)
        slow = ledger.claim("slow", LEASE, limit=3)  # in flight for the whole test
        last_seen = ledger.query("SELECT last_seen_at FROM runs WHERE id = 'dead-run'")[0].last_seen_at
        watch = SilenceWatch(LEASE)
        _look(ledger, clock, watch)

        _watch_for(ledger, clock, watch, SILENT_BEATS - 1, "slow-run", "watcher-run")
        assert watch.silent(clock()) == {}
        assert ledger.reclaim_silent(watch.silent(clock())) == []
        _watch_for(ledger, clock, watch, 1, "slow-run", "watcher-run")
        silent = watch.silent(clock())
        assert list(silent) == ["dead"]

        cleaned: list = []
        reclaimed = ledger.reclaim_silent(silent, before_commit=cleaned.extend)

        assert sorted(reclaimed) == sorted((u.dataset, u.ticker, u.period_start) for u in held)
        assert cleaned == reclaimed  # its temporaries' folders, before the units are released
        states = dict(ledger.query("SELECT id, state FROM units"))
        assert {states[u.id] for u in held} == {"pending"}
        assert {states[u.id] for u in slow} == {"running"}  # the slow run keeps every unit
        assert all(ledger.still_holds(u) for u in slow)
        attempts = ledger.query(
            "SELECT unit_id, run_id, outcome, error_class FROM unit_attempts ORDER BY unit_id"
        )
        assert [tuple(a) for a in attempts] == [(u.id, "dead-run", "pending", "lease_expired") for u in held]
        dead = ledger.query("SELECT outcome, ended_at FROM runs WHERE id = 'dead-run'")[0]
        assert tuple(dead) == ("lost", last_seen)
        with pytest.raises(LeaseLost):  # were it only slow, it could not settle any more
            ledger.settle_empty(held[0], False, AttemptRecord(requests=1), run_id="dead-run")
        ledger.settle_empty(slow[0], False, AttemptRecord(requests=1), run_id="slow-run")
        assert ledger.reclaim_silent(silent) == []  # nothing twice
        # the dead run is closed: no longer watched
        _watch_for(ledger, clock, watch, 1, "slow-run", "watcher-run")
        assert list(ledger.runs_last_seen("watcher")) == ["slow"]


def test_a_run_that_beats_between_the_look_and_the_take_back_keeps_its_units(location):
    clock = LedgerClock()
    with Ledger(location, clock=clock) as ledger:
        plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 2, 29))
        _start(ledger, "late-run", owner="late")
        held = ledger.claim("late", LEASE, limit=2)
        watch = SilenceWatch(LEASE)
        _look(ledger, clock, watch)
        _watch_for(ledger, clock, watch, SILENT_BEATS)
        silent = watch.silent(clock())
        assert list(silent) == ["late"]
        ledger.run_alive("late-run", units_settled=0, requests=0)  # it was alive after all

        assert ledger.reclaim_silent(silent) == []
        assert all(ledger.still_holds(u) for u in held)
        assert ledger.query("SELECT outcome, ended_at FROM runs")[0] == (None, None)


def test_only_open_runs_of_others_that_hold_units_are_watched(location):
    clock = LedgerClock()
    with Ledger(location, clock=clock) as ledger:
        plan(ledger, ["A"], "minute", D(2024, 1, 1), D(2024, 4, 30))
        for owner in ("holds", "idle", "ended", "watcher"):
            _start(ledger, f"{owner}-run", owner=owner)
        for owner in ("holds", "ended", "watcher"):
            ledger.claim(owner, LEASE, limit=1)
        ledger.end_run("ended-run", "interrupted", 0, 0)  # e.g. a second Ctrl-C: its leases expire
        ledger.claim("no-run-row", LEASE, limit=1)  # a claim outside any run: leases decide
        assert set(ledger.runs_last_seen("watcher")) == {"holds"}


# --- real processes on PostgreSQL ----------------------------------------------------------


def _settled(ledger: Ledger) -> int:
    return ledger.query("SELECT count(*) AS n FROM units WHERE state IN ('done', 'empty_confirmed')")[0].n


class HeldServer(StandInServer):
    """A stand-in whose every answer waits until `release` is set (or the server stops)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def _sleep(self, seconds: float) -> None:
        while not (self.release.is_set() or self._stopping.is_set()):
            self.release.wait(0.05)


def _run(work, url: str, ledger: str, *extra: object) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    command = cli_command(
        "run", "--base-url", url, "--ledger", ledger, "--lease-seconds", int(LEASE), "--rate", 500, *extra
    )
    return subprocess.Popen(
        command, cwd=work, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _held_by(ledger: Ledger, child: subprocess.Popen) -> tuple[str | None, set[int]]:
    """The run id of a child process and the ids of the units it holds."""
    runs = ledger.query("SELECT id, owner FROM runs WHERE pid = :pid", {"pid": child.pid})
    if not runs:
        return None, set()
    rows = ledger.query(
        "SELECT id FROM units WHERE state = 'running' AND lease_owner = :owner", {"owner": runs[0].owner}
    )
    return runs[0].id, {row.id for row in rows}


def test_a_killed_hosts_units_are_taken_back_long_before_its_leases_and_a_slow_host_keeps_its_own(
    work,
    new_database,  # noqa: F811
):
    """Three `run`s on one PostgreSQL ledger with 10-minute leases: `slow` sits inside one
    request (held by its server), `victim` is killed with -9 holding units, `survivor`
    finishes. The survivor takes the victim's units back after a few missed heartbeats (it
    would otherwise wait out the 10 minutes) while the slow run, silent on the network but
    beating, keeps its unit and settles it itself."""
    pg = new_database()
    tickers = [f"D{i:02d}" for i in range(8)]
    start, end = D(2024, 1, 1), D(2024, 6, 30)
    market = SyntheticMarket([Listing(t, bars_per_day=4) for t in tickers], seed=14)
    write_universe(work / "u.csv", tickers)
    planned = subprocess.run(
        cli_command("plan", "--universe", "u.csv", "--from", start, "--to", end, "--ledger", pg),
        env=python_env(),
        cwd=work,
        capture_output=True,
    )
    assert planned.returncode == 0, planned.stderr
    children: list[subprocess.Popen] = []
    with (
        Ledger(pg) as ledger,
        HeldServer(market, api_keys=(API_KEY,)) as held,
        StandInServer(market, api_keys=(API_KEY,), latency=0.2) as fast,
    ):
        try:
            slow = _run(work, held.url, pg, "--workers", 1, "--max-units", 1)
            children.append(slow)
            assert wait_for(lambda: len(_held_by(ledger, slow)[1]) == 1, timeout=60)
            slow_run, slow_units = _held_by(ledger, slow)

            victim = _run(work, fast.url, pg, "--workers", 2)
            children.append(victim)
            assert wait_for(lambda: _held_by(ledger, victim)[1], timeout=60)
            victim.kill()
            victim.wait(timeout=10)
            victim_run, victim_units = _held_by(ledger, victim)
            assert victim_units  # orphaned mid-flight, leased for ten more minutes

            survivor = _run(work, fast.url, pg, "--workers", 2)
            children.append(survivor)
            assert wait_for(lambda: not _held_by(ledger, victim)[1], timeout=120), "still held by the dead"
            # by now the survivor has watched the slow run as long as the dead one
            assert _held_by(ledger, slow)[1] == slow_units
            everything_else = len(tickers) * 6 - 1
            assert wait_for(lambda: _settled(ledger) == everything_else, timeout=120)
            assert _held_by(ledger, slow)[1] == slow_units
            assert survivor.poll() is None  # it waits for the slow run's unit, not past it

            held.release.set()
            assert slow.wait(timeout=120) == 0
            assert survivor.wait(timeout=120) == 0
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)

        states = dict(ledger.query("SELECT state, count(*) FROM units GROUP BY state"))
        assert set(states) <= {"done", "empty_confirmed"}, states
        lost = ledger.query(
            "SELECT unit_id, run_id FROM unit_attempts WHERE error_class = 'lease_expired' ORDER BY unit_id"
        )
        assert [tuple(row) for row in lost] == [(unit, victim_run) for unit in sorted(victim_units)]
        (slow_unit,) = slow_units
        attempts = ledger.query(
            "SELECT run_id, outcome FROM unit_attempts WHERE unit_id = :u", {"u": slow_unit}
        )
        assert [tuple(a) for a in attempts] == [(slow_run, "done")]
        outcomes = dict(ledger.query("SELECT id, outcome FROM runs"))
        assert outcomes[victim_run] == "lost" and outcomes[slow_run] == "finished"
        assert sorted(outcomes.values()) == ["finished", "finished", "lost"]
    expected = [truth(market, "minute", t, start, end) for t in tickers]
    import polars as pl

    assert_frame_equal(read_dataset(work / "data", "minute"), pl.concat(expected).sort("ticker", "timestamp"))

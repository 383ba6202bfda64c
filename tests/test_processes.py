"""`run --processes N`: one run in N real worker processes; one progress, one stop, one
exit code; a child that dies does not hang the run."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import subprocess

import polars as pl
import psutil
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

from polyledger.testing import StandInServer

D = dt.date
START, END = D(2023, 1, 1), D(2023, 12, 31)
TICKERS = ["AAPL", "BRK.B", "SIRI", "PLUG", "NEWCO", "MID1"]


def _plan(work) -> None:  # type: ignore[no-untyped-def]
    write_universe(work / "universe.csv", TICKERS)
    assert run_cli("plan", "--universe", "universe.csv", "--from", START, "--to", END).code == 0


def _expected(market) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.concat([truth(market, "minute", t, START, END) for t in TICKERS]).sort("ticker", "timestamp")


def _runs(ledger) -> list[tuple]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(ledger) as connection:
        return connection.execute(
            "SELECT id, pid, owner, outcome, units_settled FROM runs ORDER BY id"
        ).fetchall()


def _live_children(ledger) -> list[int]:  # type: ignore[no-untyped-def]
    """The pids of the runs started and not ended (read without disturbing the run)."""
    connection = sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in connection.execute("SELECT pid FROM runs WHERE ended_at IS NULL")]
    except sqlite3.OperationalError:  # the ledger is being created
        return []
    finally:
        connection.close()


def test_two_processes_download_the_truth_and_report_the_ledgers_totals(work, market):
    _plan(work)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=4_000) as server:
        result = run_cli(
            "run",
            "--base-url",
            server.url,
            "--processes",
            "2",
            "--workers",
            "5",
            "--rate",
            "300",
            "--log-file",
            "run.log",
        )
    assert result.code == 0, result.err + result.out
    assert_frame_equal(read_dataset(work / "data", "minute"), _expected(market))

    states = ledger_states(work / "ledger.db")
    assert set(states) == {"done", "empty_confirmed"}
    # the summary's totals are the sums of the children's counters: they equal the ledger's
    summary = re.search(r"(\d+) done, (\d+) empty_confirmed, (\d+) failed", result.out)
    assert summary is not None, result.out
    assert summary.groups() == (str(states["done"]), str(states["empty_confirmed"]), "0")
    bars = re.search(r"([\d,]+) bars, (\d+) requests", result.out)
    assert int(bars.group(1).replace(",", "")) == _expected(market).height

    # one row per process: its own owner (lease) and pid, named after the parent's run id
    runs = _runs(work / "ledger.db")
    parent_id = re.search(r"run (\w+) finished", result.out).group(1)
    assert [row[0] for row in runs] == [f"{parent_id}-1", f"{parent_id}-2"]
    assert len({row[2] for row in runs}) == 2 and os.getpid() not in {row[1] for row in runs}
    assert {row[3] for row in runs} == {"finished"}
    assert sum(row[4] for row in runs) == sum(states.values())
    with sqlite3.connect(work / "ledger.db") as connection:
        shares = connection.execute("SELECT workers, rate FROM runs ORDER BY id").fetchall()
        attempt_runs = {row[0] for row in connection.execute("SELECT DISTINCT run_id FROM unit_attempts")}
    assert attempt_runs <= {row[0] for row in runs}
    assert shares == [(3, 150.0), (2, 150.0)]  # --workers and --rate are the whole run's, split

    # one log file, written by the parent: each child's end and the whole run's
    ends = [line for line in (work / "run.log").read_text().splitlines() if "run ended:" in line]
    assert len(ends) == 3 and f"run_id={parent_id} outcome=finished" in ends[-1]
    assert f"units_settled={sum(states.values())}" in ends[-1]
    assert sum(1 for line in (work / "run.log").read_text().splitlines() if " unit: " in line) >= sum(
        states.values()
    )


def test_a_bad_key_stops_every_process_and_leaves_every_unit_pending(work, market):
    _plan(work)
    with StandInServer(market, api_keys=("another-key",)) as server:
        result = run_cli("run", "--base-url", server.url, "--processes", "2", "--workers", "2")
    assert result.code == 1, result.err + result.out
    assert "stopped:" in result.out and API_KEY not in result.out + result.err
    assert set(ledger_states(work / "ledger.db")) == {"pending"}
    # the process that met the 401 stopped itself; one stopped by it first is `interrupted`
    outcomes = {row[3] for row in _runs(work / "ledger.db")}
    assert "stopped" in outcomes and outcomes <= {"stopped", "interrupted"}


def test_bad_process_counts_are_refused_before_anything_starts(work):
    _plan(work)
    for args, message in (
        (("--processes", "3", "--workers", "2"), "needs at least as many --workers"),
        (("--processes", "many"), "must be a number or auto"),
        (("--processes", "0"), "at least 1"),
    ):
        result = run_cli("run", "--base-url", "http://127.0.0.1:9", *args)
        assert result.code == 2 and message in result.err, (args, result.err)
    assert _runs(work / "ledger.db") == []


def test_an_error_in_the_children_is_one_line_and_exit_2(work, market):
    """The children refuse a ledger holding the other kind of bars: the parent says it once."""
    _plan(work)
    with sqlite3.connect(work / "ledger.db") as connection:
        connection.execute("INSERT INTO settings (key, value) VALUES ('adjusted', 'false')")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        result = run_cli("run", "--base-url", server.url, "--processes", "2", "--workers", "2")
    assert result.code == 2, result.err + result.out
    assert result.err.count("this ledger holds unadjusted bars") == 1
    assert set(ledger_states(work / "ledger.db")) == {"pending"}


def _start(work, server, *extra: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    command = cli_command(
        "run", "--base-url", server.url, "--processes", "2", "--workers", "4", "--rate", "500", *extra
    )
    return subprocess.Popen(
        command,
        cwd=work,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _started(ledger) -> list[int]:  # type: ignore[no-untyped-def]
    """Both children's pids, once both run and some units are done."""
    assert wait_for(
        lambda: len(_live_children(ledger)) == 2 and ledger_states(ledger).get("done", 0) >= 4, timeout=90
    ), ledger_states(ledger)
    return _live_children(ledger)


@pytest.mark.skipif(os.name != "posix", reason="Windows cannot send SIGINT or SIGTERM to one process")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_parent_stops_every_child_and_leaves_no_unit_running(work, market, signum):
    _plan(work)
    ledger = work / "ledger.db"
    with StandInServer(market, api_keys=(API_KEY,), latency=0.2, page_cap=2_000) as server:
        parent = _start(work, server)
        try:
            children = _started(ledger)
            parent.send_signal(signum)  # to the parent only: it must pass the stop on
            out, err = parent.communicate(timeout=120)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
    assert parent.returncode == 130, err
    assert not [pid for pid in children if psutil.pid_exists(pid)]
    states = ledger_states(ledger)
    assert "running" not in states and states.get("pending", 0) >= 1, states
    assert {row[3] for row in _runs(ledger)} == {"interrupted"}
    assert "interrupted" in out


def test_a_child_killed_9_does_not_hang_the_run_and_its_units_are_taken_back(work, market):
    _plan(work)
    ledger = work / "ledger.db"
    with StandInServer(market, api_keys=(API_KEY,), latency=0.1, page_cap=2_000) as server:
        parent = _start(work, server, "--lease-seconds", "2")
        try:
            victim = _started(ledger)[0]
            psutil.Process(victim).kill()  # SIGKILL, TerminateProcess on Windows: no cleanup
            out, err = parent.communicate(timeout=180)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
    # the run completes through the survivor, and says a process was lost: exit 1
    assert parent.returncode == 1, out + err
    assert re.search(rf"process \d \(run \w+-\d, pid {victim}\) ended without finishing", out), out
    assert set(ledger_states(ledger)) <= {"done", "empty_confirmed"}
    assert_frame_equal(read_dataset(work / "data", "minute"), _expected(market))
    outcomes = {pid: outcome for _, pid, _, outcome, _ in _runs(ledger)}
    assert outcomes[victim] in ("lost", None) and set(outcomes.values()) - {outcomes[victim]} == {"finished"}


def test_processes_auto_is_one_per_core_and_never_more_than_the_workers():
    from polyledger.fetch.processes import processes_wanted, share

    assert processes_wanted("auto", 64) == (os.cpu_count() or 1)
    assert processes_wanted("AUTO", 1) == 1
    assert processes_wanted("2", 2) == 2
    # workers, --max-units: split whole, nothing lost
    assert [share(17, 3, i) for i in range(3)] == [6, 6, 5]


def test_children_of_a_parent_killed_9_stop_on_their_own_and_give_their_units_back(work, market):
    _plan(work)
    ledger = work / "ledger.db"
    with StandInServer(market, api_keys=(API_KEY,), latency=0.2, page_cap=2_000) as server:
        parent = _start(work, server)
        try:
            _started(ledger)
            children = psutil.Process(parent.pid).children()
            parent.kill()  # no cleanup in the parent: its pipes to the children close
            parent.communicate(timeout=30)
            _, alive = psutil.wait_procs(children, timeout=120)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
    assert len(children) == 2 and alive == []
    states = ledger_states(ledger)
    assert "running" not in states and states.get("pending", 0) >= 1, states
    assert {row[3] for row in _runs(ledger)} == {"interrupted"}

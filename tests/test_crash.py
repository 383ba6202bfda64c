"""A run killed with SIGKILL loses nothing: its leases expire and the next run finishes."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess

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

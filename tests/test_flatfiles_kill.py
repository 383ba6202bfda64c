"""kill -9 during a flat-file run, while a day is staged or a ticker-month transposed (its
file in place, its unit not yet settled), then a second run: nothing lost, nothing
duplicated, no temporary left."""

# ruff: noqa: F811 - moto_endpoint, the fixture imported from test_s3, is each test's argument
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from flat_support import END, HOLIDAYS, START, UNIVERSE, bars, plan, publish_market, use_bucket
from polars.testing import assert_frame_equal
from support import ledger_states, python_env, run_cli, truth, wait_for
from test_s3 import moto_endpoint  # noqa: F401 - the session's local S3

from polyledger.storage import BarStore

VICTIM = Path(__file__).with_name("flat_victim.py")


def _expected(market) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    frames = [truth(market, "minute", ticker, START, END) for ticker in UNIVERSE]
    frame = pl.concat(frames).select(
        ["ticker", "timestamp", "open", "high", "low", "close", "volume", "transactions"]
    )
    dates = frame.get_column("timestamp").dt.convert_time_zone("America/New_York").dt.date()
    return frame.filter(~dates.is_in(HOLIDAYS)).sort("ticker", "timestamp")


@pytest.mark.parametrize(("dataset", "count"), [("minute_files", 5), ("minute", 3)])
def test_kill_9_mid_flat_run_then_resume_loses_and_repeats_nothing(
    work,
    market,
    moto_endpoint,
    monkeypatch,
    dataset,
    count,
):
    bucket = f"flat-kill-{dataset.replace('_', '-')}"
    use_bucket(monkeypatch, moto_endpoint, bucket)
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    args = ["run", "--source", "flatfiles", "--unadjusted", "--workers", "2", "--lease-seconds", "2"]
    args += ["--ledger", ledger, "--data", data]
    marker = work / "at-the-gate"
    victim = subprocess.Popen(
        [sys.executable, str(VICTIM), dataset, str(count), str(marker), *args],
        cwd=work,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(marker.exists, timeout=120), "the run never reached the gate"
        victim.kill()  # SIGKILL: no cleanup runs
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    states = ledger_states(work / ledger)
    assert states.get("running", 0) >= 1, states  # a unit was caught with its file written, unsettled

    result = run_cli(*args)
    assert result.code == 0, result.err + result.out
    assert set(ledger_states(work / ledger)) <= {"done", "empty_confirmed"}
    got = bars(work, data, "minute").drop("security_id", strict=False).select(_expected(market).columns)
    assert_frame_equal(got, _expected(market))  # every bar once, none lost
    # every month settled: its staged days deleted, the day units done without a file
    assert not list((work / data / "minute_files").rglob("*.parquet"))
    with sqlite3.connect(work / ledger) as db:
        days = db.execute("SELECT state, file_path FROM units WHERE dataset = 'minute_files'").fetchall()
    assert days and set(days) == {("done", None)}
    assert BarStore(work / data).temporaries() == []
    assert run_cli("audit", "--deep", "--ledger", ledger, "--data", data).code == 0

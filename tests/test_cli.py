"""The command line as a user meets it: clear one-line errors, exit codes, read-only SQL."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess

import pytest
from support import API_KEY, cli_command, python_env, run_cli, write_universe

from polyledger.ledger import AttemptRecord, Ledger
from polyledger.testing import StandInServer


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", "--universe", "missing.csv", "--from", "2024-01-01"], "universe file not found"),
        (["plan", "--universe", "u.csv", "--from", "2024-02-30"], "invalid date '2024-02-30' for --from"),
        (["plan", "--universe", "u.csv", "--from", "2024-03-01", "--to", "2024-01-01"], "is after --to"),
        (["plan", "--universe", "u.csv", "--from", "2024-01-01", "--dataset", "hourly"], "unknown dataset"),
        (["plan", "--universe", "bad.csv", "--from", "2024-01-01"], "invalid ticker 'aa/pl'"),
        (["plan", "--universe", "u.csv"], "--from is required for minute bars"),
        (["plan", "--universe", "u.csv", "--from", "2024-01-01", "--bogus"], "No such option: --bogus"),
        (["run", "--workers", "0"], "--workers"),
        (["status"], "no ledger at ledger.db"),
        (["audit"], "no ledger at ledger.db"),
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--straddle", "sometimes"], "--straddle must be one of 403, clip, not 'sometimes'"),
        (["universe", "--out", "u.csv", "--date", "2999-01-01"], "--date 2999-01-01 is in the future"),
        (["universe", "--out", "u.csv", "--base-url", "http://me:pw@127.0.0.1:1"], "without credentials"),
        (["universe", "--out", "u.csv", "--base-url", "http://127.0.0.1:1/?apiKey=x"], "without credentials"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(work, args, message):
    write_universe(work / "u.csv", ["AAPL"])
    (work / "bad.csv").write_text("ticker\naa/pl\n", encoding="utf-8")
    before = sorted(p.name for p in work.iterdir())
    result = run_cli(*args)
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert sorted(p.name for p in work.iterdir()) == before  # no ledger, no data folder


def test_run_needs_a_key_and_a_plan(work, monkeypatch):
    result = run_cli("run")
    assert (result.code, result.err.strip()) == (
        2,
        "error: no ledger at ledger.db: run `polyledger plan` first",
    )
    monkeypatch.delenv("POLYGON_API_KEY")
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    result = run_cli("run")
    assert result.code == 2 and "set POLYGON_API_KEY" in result.err


def test_unwritable_data_folder_is_an_input_error(work):
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    (work / "data").write_text("a file where the data folder should be")
    result = run_cli("run", "--base-url", "http://127.0.0.1:9")
    assert result.code == 2 and "data folder data is not writable" in result.err
    with sqlite3.connect(work / "ledger.db") as connection:
        assert connection.execute("SELECT state, attempts FROM units").fetchall() == [("pending", 0)]


def test_sql_is_read_only_and_prints_results(work):
    write_universe(work / "u.csv", ["AAPL", "MSFT"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-03-31")
    result = run_cli(
        "sql", "SELECT ticker, count(*) AS n FROM units GROUP BY ticker ORDER BY ticker", "--format", "json"
    )
    assert result.code == 0
    assert json.loads(result.out) == [{"ticker": "AAPL", "n": 3}, {"ticker": "MSFT", "n": 3}]
    csv = run_cli("sql", "SELECT state, count(*) AS n FROM units GROUP BY state", "--format", "csv")
    assert csv.out.splitlines() == ["state,n", "pending,6"]
    denied = run_cli("sql", "DELETE FROM units")
    assert denied.code == 2 and "SQL error" in denied.err
    assert run_cli("sql", "SELECT count(*) AS n FROM units", "--format", "csv").out.splitlines()[1] == "6"


def test_status_and_audit_show_what_is_left(work):
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-02-29")
    status = run_cli("status")
    assert status.code == 0 and "pending" in status.out and "minute" in status.out
    audit = run_cli("audit", "--json")
    assert audit.code == 3  # only work left: a scheduler runs again
    report = json.loads(audit.out)
    assert report["complete"] is False and report["exit_code"] == 3
    assert report["datasets"][0]["by_state"]["pending"] == 2
    assert report["datasets"][0]["never_attempted"] == 2
    assert report["datasets"][0]["by_year"] == [{"year": "2024", "units": 2, "settled": 0, "failed": 0}]

    # a unit that failed and was queued again has a fresh budget, but it was tried
    with Ledger(work / "ledger.db") as ledger:
        unit = ledger.claim("w", 60)[0]
        ledger.settle_failed(unit, AttemptRecord(error_class="not_found", error="HTTP 404"))
    assert run_cli("retry", "--class", "all").code == 0
    again = json.loads(run_cli("audit", "--json").out)["datasets"][0]
    assert again["by_state"]["pending"] == 2 and again["never_attempted"] == 1
    assert "never attempted: 1 units" in run_cli("audit").out


def test_cp1252_console_does_not_crash(work, market):
    """Everything a run prints survives a Windows cp1252 console."""
    write_universe(work / "u.csv", ["BRK.B", "TINY"])
    env = dict(python_env(), PYTHONIOENCODING="cp1252", POLYGON_API_KEY=API_KEY)
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        for args in (
            ["plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-03-31"],
            ["run", "--base-url", server.url],
            ["status"],
            ["audit"],
            ["sql", "SELECT * FROM units LIMIT 3"],
        ):
            done = subprocess.run(
                cli_command(*args),
                cwd=work,
                env=env,
                capture_output=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr.decode("cp1252", errors="replace")
            done.stdout.decode("cp1252")  # valid cp1252 throughout
            assert b"Traceback" not in done.stderr


def test_help_lists_every_command_with_an_example():
    result = run_cli("--help")
    for command in ("plan", "run", "status", "audit", "sql", "demo", "serve"):
        assert command in result.out
    for command in ("plan", "run", "sql"):
        assert "Example:" in run_cli(command, "--help").out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base-url", "http://127.0.0.1:99999"], "invalid --base-url"),
        (["--base-url", "http://[::1"], "invalid --base-url"),
        (["--base-url", "ftp://example.com"], "must look like https://host"),
        (["--log-file", "no/such/folder/run.log"], "folder for --log-file does not exist"),
    ],
)
def test_bad_run_options_are_one_line_errors(work, args, message):
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    result = run_cli("run", *args)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1
    assert not (work / "data").exists()


def test_a_period_that_has_not_ended_cannot_be_planned(work):
    write_universe(work / "u.csv", ["AAPL"])
    for to in ("9999-12-31", (dt.date.today() + dt.timedelta(days=2)).isoformat()):
        result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", to)
        assert result.code == 2 and "has not ended yet" in result.err
    assert not (work / "ledger.db").exists()


def test_run_without_a_ledger_creates_nothing(work):
    result = run_cli("run", "--base-url", "http://127.0.0.1:9")
    assert result.code == 2 and not (work / "data").exists() and not (work / "ledger.db").exists()


def test_sql_json_output_handles_blobs(work):
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    result = run_cli("sql", "SELECT x'00ff' AS blob, 1.5 AS number", "--format", "json")
    assert result.code == 0 and json.loads(result.out) == [{"blob": "00ff", "number": 1.5}]


def test_status_and_audit_do_not_wait_for_a_writer(work):
    """A reader never needs the write lock, even while another process holds it."""
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-03-31")
    writer = sqlite3.connect(work / "ledger.db", timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert run_cli("status").code == 0
        assert run_cli("audit").code == 3  # work left, answered at once
    finally:
        writer.rollback()
        writer.close()


def test_long_etas_show_days():
    from polyledger.output.progress import duration

    assert duration(59) == "00:00:59"
    assert duration(28 * 3600 + 400) == "1d 04:06:40"


def test_sql_errors_say_read_only_only_for_writes(work):
    write_universe(work / "u.csv", ["AAPL"])
    run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    write = run_cli("sql", "DELETE FROM units")
    assert write.code == 2 and "read-only" in write.err
    typo = run_cli("sql", "SELEC 1")
    assert typo.code == 2 and "syntax error" in typo.err and "read-only" not in typo.err
    empty = run_cli("sql", "  ")
    assert empty.code == 2 and empty.err.startswith("error: empty query")

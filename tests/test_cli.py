"""The command line as a user meets it: clear one-line errors, exit codes, read-only SQL,
Ctrl-C, ledger copies between SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest
from support import API_KEY, cli_command, ctrl_c, python_env, run_cli, write_universe

from polyledger.ledger import AttemptRecord, Ledger
from polyledger.testing import StandInServer


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", "--universe", "missing.csv", "--from", "2024-01-01"], "universe file not found"),
        (["plan", "--universe", "u.csv", "--from", "2024-02-30"], "invalid date '2024-02-30' for --from"),
        # Python 3.11's fromisoformat takes these (3.10's does not): refused on every Python
        (["plan", "--universe", "u.csv", "--from", "20240101"], "invalid date '20240101' for --from"),
        (["plan", "--universe", "u.csv", "--from", "2024-W01-1"], "invalid date '2024-W01-1' for --from"),
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
        (["universe", "--out", "u.csv", "--date", "1990-01-01"], "--date 1990-01-01 is before 2000-01-01"),
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
    nested = run_cli("run", "--base-url", "http://127.0.0.1:9", "--data", "data/inside")  # under a file
    assert nested.code == 2 and "data folder data/inside is not writable" in nested.err.replace("\\", "/")
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


# `polyledger sql ...` whose ledger connection has a `started()` SQL function: a query
# calling it once prints "query started" when SQLite runs it on, in C, where no Python code
# runs (a thread says so once the main thread has left the function: a signal arriving
# while it is still inside would be acted on there, not in SQLite)
SQL_WITH_A_START_LINE = """
import sys, threading, time
from polyledger.cli import main
from polyledger.ledger import readonly

opened = readonly.open_read_only
main_thread = threading.main_thread().ident

def in_started():
    frame = sys._current_frames()[main_thread]
    while frame is not None and frame.f_code.co_name != "started":
        frame = frame.f_back
    return frame is not None

def announce():
    while in_started():
        time.sleep(0.001)
    print("query started", flush=True)

def open_with_a_start_line(path):
    connection = opened(path)

    def started():
        threading.Thread(target=announce, daemon=True).start()
        return 1

    connection.create_function("started", 0, started)
    return connection

readonly.open_read_only = open_with_a_start_line
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT as a terminal's Ctrl-C does")
@pytest.mark.parametrize(
    "inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"]
)
def test_ctrl_c_stops_a_long_sql_query(work, inherited):
    """`polyledger sql` with a query that runs long (a runaway recursive CTE, a cross join of
    unit_attempts on a big ledger) ignored Ctrl-C: SQLite runs in one C call that never
    returns to Python, so the KeyboardInterrupt was never raised and the command had to be
    killed (found by a review). Ctrl-C stops it at once: "interrupted", exit 130, also when
    the command was started with SIGINT ignored (a background job; docs/commands.md)."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    query = "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    child = subprocess.Popen(
        [sys.executable, "-c", SQL_WITH_A_START_LINE, "sql", query],
        cwd=work,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    answer = ctrl_c(child, lambda: child.stdout.readline() == "query started\n")  # inside SQLite
    assert answer == (130, "interrupted\n", "")


def _one_line_error(result) -> bool:  # type: ignore[no-untyped-def]
    return result.err.startswith("error: ") and result.err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--to", "units.csv"],
        ["export", "--to", "bars.parquet"],
        ["export", "--to", "units.xlsx"],
        ["import", "--from", "u.csv", "--ledger", "copy.db"],  # a CSV file is no ledger to copy
        ["import", "--from", "ledger.db", "--ledger", "units.json"],
    ],
)
def test_export_to_a_csv_file_is_not_a_sqlite_database_named_csv(work, args):
    """`polyledger export --to units.csv` (what a user types to get the ledger as CSV) said
    "copied ledger.db to units.csv", exit 0, and wrote a SQLite database under the .csv name:
    a spreadsheet opens garbage, and `plan --universe units.csv` later says "not UTF-8 text"
    (found by a review). A SQLite ledger a copy makes is named .db, .sqlite or .sqlite3 (or
    has no suffix): anything else is refused on one line, exit 2, writing nothing, pointing
    at `polyledger sql ... --format csv`."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    before = {path.name: path.read_bytes() for path in work.iterdir()}
    result = run_cli(*args)
    assert result.code == 2 and _one_line_error(result), (result.code, result.out, result.err)
    assert "is not a ledger's name" in result.err
    assert 'polyledger sql "SELECT * FROM units" --format csv' in result.err
    assert {path.name: path.read_bytes() for path in work.iterdir()} == before


def test_a_ledger_copied_between_sqlite_files_is_the_same_ledger(work):
    """export/import between SQLite files (the names a ledger has: .db, .sqlite, .sqlite3, no
    suffix; an existing SQLite file whatever its name) copy every table as it is."""

    def dump(path) -> dict:  # type: ignore[no-untyped-def]
        with sqlite3.connect(work / path) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in tables}

    write_universe(work / "u.csv", ["AAPL", "MSFT"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-03-31").code == 0
    with Ledger(work / "ledger.db") as ledger:
        ledger.identity()  # settings.ledger_id, which a copy keeps
        unit = ledger.claim("w", 60)[0]
        ledger.settle_failed(unit, AttemptRecord(error_class="not_entitled", error="HTTP 403"))
    original = dump("ledger.db")
    assert original["settings"] and original["unit_attempts"]

    assert run_cli("export", "--to", "copy.sqlite3").code == 0
    shutil.copy(work / "copy.sqlite3", work / "ledger.db.bak")  # a backup: a SQLite file named so
    imported = run_cli("import", "--from", "ledger.db.bak", "--ledger", "restored")
    assert imported.code == 0, imported.err
    assert dump("copy.sqlite3") == dump("restored") == original
    assert not [path.name for path in work.iterdir() if ".partial" in path.name]
    again = run_cli("export", "--to", "restored")
    assert again.code == 2 and "is not empty" in again.err and _one_line_error(again)


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
    assert "never attempted: 1 unit" in run_cli("audit").out


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


# --- after a fresh-eyes review of the CLI (2026-12-01): each seen to fail before its fix ---


def _planned(work) -> None:  # type: ignore[no-untyped-def]
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0


def _units(work) -> list[tuple]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(work / "ledger.db") as connection:
        return connection.execute("SELECT state, attempts FROM units").fetchall()


@pytest.mark.parametrize("command", ["status", "audit"])
def test_a_damaged_ledger_is_one_line(work, command):
    _planned(work)
    (work / "broken.db").write_bytes((work / "ledger.db").read_bytes()[:20_000])  # a copy cut short
    result = run_cli(command, "--ledger", "broken.db")
    assert result.code == 2 and result.err.startswith("error: ") and result.err.count("\n") == 1, result.err


def test_a_ledger_the_database_refuses_to_write_is_one_line(work, monkeypatch):
    """A read-only ledger file (raw cursors of the hot path raise sqlite3's own errors)."""
    from polyledger.ledger.planning import Planning

    _planned(work)

    def read_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Planning, "add_units", read_only)
    write_universe(work / "u.csv", ["AAPL", "MSFT"])
    result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    assert result.code == 2 and "readonly" in result.err and result.err.count("\n") == 1, result.err


def test_another_programs_sqlite_file_is_never_written_into(work):
    with sqlite3.connect(work / "notes.db") as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    result = run_cli("status", "--ledger", "notes.db")
    assert result.code == 2 and "not a polyledger ledger" in result.err and result.err.count("\n") == 1
    with sqlite3.connect(work / "notes.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"notes"}
    (work / "empty.db").touch()
    result = run_cli("status", "--ledger", "empty.db")
    assert result.code == 2 and "an empty database" in result.err


@pytest.mark.parametrize(
    "option",
    [
        ("--lease-seconds", "inf"),
        ("--lease-seconds", "1e15"),
        ("--timeout", "inf"),
        ("--give-up-after", "1e300"),
    ],
)
def test_durations_no_run_can_use_are_refused_up_front(work, option):
    _planned(work)
    result = run_cli("run", "--base-url", "http://127.0.0.1:9", *option)
    assert result.code == 2 and option[0] in result.err and result.err.count("\n") == 1, result.err
    assert _units(work) == [("pending", 0)]


def test_a_key_a_header_cannot_carry_is_refused_without_being_shown(work, monkeypatch):
    _planned(work)
    monkeypatch.setenv("POLYGON_API_KEY", API_KEY + "\u201d")  # a curly quote pasted with it
    result = run_cli("run", "--base-url", "http://127.0.0.1:9")
    assert result.code == 2 and "POLYGON_API_KEY holds characters" in result.err, result.err
    assert API_KEY not in result.out + result.err
    assert _units(work) == [("pending", 0)]


def test_a_log_file_that_is_a_folder_is_one_line(work):
    _planned(work)
    (work / "logs").mkdir()
    result = run_cli("run", "--base-url", "http://127.0.0.1:9", "--log-file", "logs")
    assert result.code == 2 and "is a folder" in result.err and result.err.count("\n") == 1


def test_the_key_in_the_base_urls_path_is_refused_and_never_stored(work):
    _planned(work)
    result = run_cli("run", "--base-url", f"http://127.0.0.1:9/{API_KEY}")
    assert result.code == 2 and "holds the API key" in result.err and API_KEY not in result.err
    assert API_KEY.encode() not in b"".join(path.read_bytes() for path in work.glob("ledger.db*"))


@pytest.mark.parametrize("data", ["", "  ", "memory://bars"])
def test_a_data_location_nothing_outlives_is_refused(work, data):
    _planned(work)
    result = run_cli("run", "--base-url", "http://127.0.0.1:9", "--data", data)
    assert result.code == 2 and "--data" in result.err and result.err.count("\n") == 1, result.err
    assert _units(work) == [("pending", 0)]


def test_a_data_location_whose_host_is_not_found_is_one_line(work):
    _planned(work)
    result = run_cli("run", "--base-url", "http://127.0.0.1:9", "--data", "ftp://no-such-host.invalid/bars")
    assert result.code == 2 and "cannot use data location" in result.err and result.err.count("\n") == 1


def test_status_counts_no_rows_for_a_unit_queued_again(work, server):
    """A unit queued again (repair, retry --stale) keeps its last fetch's row count until
    it is fetched anew; `status` showed it beside `pending`, as if those bars were held
    there (a review noted it). Rows are counted for done units only, as `audit` does."""
    from polyledger.checks.audit import audit, status_counts

    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-02-28").code == 0
    assert run_cli("run", "--base-url", server.url).code == 0
    with Ledger(work / "ledger.db") as ledger:
        (january,) = ledger.query("SELECT id, rows FROM units WHERE period = '2023-01'")
        assert january.rows > 0
        ledger.reset_done_units([january.id])
        counts = {row["state"]: row["rows"] for row in status_counts(ledger)}
        assert counts["pending"] == 0
        assert counts["done"] == audit(ledger).datasets[0].rows > 0


def test_a_refused_run_changes_nothing(work, server):
    """An unadjusted run refused on a data folder of adjusted bars (exit 2) leaves the ledger
    as it was: the adjusted run meant then goes through (in a folder of its own: one ledger,
    one folder)."""
    _planned(work)
    assert run_cli("run", "--base-url", server.url, "--ledger", "ledger.db", "--workers", "2").code == 0
    write_universe(work / "b.csv", ["MSFT"])
    planned = run_cli(
        "plan", "--universe", "b.csv", "--from", "2024-01-01", "--to", "2024-01-31", "--ledger", "b.db"
    )
    assert planned.code == 0
    refused = run_cli("run", "--unadjusted", "--base-url", server.url, "--ledger", "b.db")
    assert refused.code == 2 and "adjusted" in refused.err and refused.err.count("\n") == 1, refused.err
    with sqlite3.connect(work / "b.db") as connection:
        assert (
            connection.execute("SELECT key FROM settings WHERE key IN ('adjusted', 'sync.run')").fetchall()
            == []
        )
    assert (
        run_cli("run", "--base-url", server.url, "--ledger", "b.db", "--workers", "2", "--data", "b").code
        == 0
    )


@pytest.mark.parametrize(
    "options",
    [("--class", "all"), ("--flagged",), ("--stale",), ("--class", "all", "--dataset", "minute")],
)
def test_retry_with_a_ticker_the_ledger_does_not_have_is_an_error(work, options):
    """`retry --ticker aapl` (the ledger has AAPL, failed) said "0 failed units are pending
    again" and exited 0: its month stayed failed while the user believed nothing was left
    (found by a review). Tickers are case-sensitive: one line, exit 2, with the hint."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    with Ledger(work / "ledger.db") as ledger:
        unit = ledger.claim("w", 60)[0]
        ledger.settle_failed(unit, AttemptRecord(error_class="not_entitled", error="HTTP 403"))
    result = run_cli("retry", *options, "--ticker", "aapl")
    assert result.code == 2 and result.err.count("\n") == 1, (result.code, result.out, result.err)
    assert "'aapl'" in result.err and "did you mean 'AAPL'?" in result.err, result.err
    with sqlite3.connect(work / "ledger.db") as db:
        assert db.execute("SELECT state FROM units").fetchall() == [("failed",)]
    assert run_cli("retry", "--class", "all", "--ticker", "AAPL").code == 0

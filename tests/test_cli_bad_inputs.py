"""Bad input refused in one line, output that is what it claims to be (found by a review of
the command line; each test states the input, what happened before, and what should)."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from support import cli_command, python_env, run_cli, write_universe


def _run_cli_no_traceback(*args: str):  # type: ignore[no-untyped-def]
    """run_cli, turning an exception escaping the CLI (a traceback for the user) into a
    test failure that says so."""
    try:
        return run_cli(*args)
    except Exception as exc:  # noqa: BLE001 - the point is that nothing escapes
        pytest.fail(
            f"polyledger {' '.join(args)} raised {type(exc).__name__}: {exc} (a traceback, not one line)"
        )


def test_demo_dir_that_is_a_file_is_one_line_exit_2(work):
    """Input: `polyledger demo --dir notes.txt`, where notes.txt is an existing file.
    Happened: `run_demo` calls `directory.mkdir(parents=True, exist_ok=True)` after
    `_check_own_folder` (which only looks at folders), and FileExistsError escapes as a
    traceback, exit 1.
    Should: `error: --dir notes.txt is a file, not a folder` (one line), exit 2, the file
    untouched."""
    (work / "notes.txt").write_text("mine\n", encoding="utf-8")
    result = _run_cli_no_traceback("demo", "--dir", "notes.txt")
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert (work / "notes.txt").read_text(encoding="utf-8") == "mine\n"


def test_universe_csv_with_an_unterminated_quote_is_refused(work):
    """Input: a universe CSV whose second row opens a quote it never closes:
        ticker,name / AAPL,"Apple / MSFT,Microsoft / TINY,Tiny
    Happened: `csv.reader` (not strict) reads the rest of the file into AAPL's name, so
    `plan` says "planned 1 minute units for 1 tickers", exit 0: MSFT and TINY silently
    dropped from the plan.
    Should: `error: universe file u.csv is not valid CSV: ...` (e.g.
    `csv.reader(handle, strict=True)`, which raises on end of data inside a quote), exit 2,
    no ledger created."""
    (work / "u.csv").write_text('ticker,name\nAAPL,"Apple\nMSFT,Microsoft\nTINY,Tiny\n', encoding="utf-8")
    result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    assert result.code == 2, result.out
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert not (work / "ledger.db").exists()


def test_plan_empty_to_is_refused_like_empty_from(work):
    """Input: `plan --universe u.csv --from 2024-01-01 --to ""` (e.g. `--to "$END"` with
    END unset in a script).
    Happened: `last = parse_date(end, "--to") if end else yesterday`: the empty string is
    taken as "no --to", the plan silently runs to yesterday, exit 0, ledger created
    (while `--from ""` is refused: "invalid date '' for --from").
    Should: `error: invalid date '' for --to: expected YYYY-MM-DD`, exit 2, nothing
    written (test `end is not None`, not its truth; the same for `universe --date ""`
    and `plan --dataset splits --from ""`)."""
    write_universe(work / "u.csv", ["AAPL"])
    result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "")
    assert result.code == 2, result.out
    assert "--to" in result.err and result.err.count("\n") == 1
    assert not (work / "ledger.db").exists()


def test_plan_splits_with_empty_from_is_refused(work):
    """Input: `plan --universe u.csv --dataset splits --from ""`.
    Happened: `if start or end:` treats "" as not given: exit 0, splits planned.
    `--from 2024-01-01` with splits is refused ("--from/--to do not apply to splits").
    Should: the same refusal for a given-but-empty --from, exit 2, no ledger."""
    write_universe(work / "u.csv", ["AAPL"])
    result = run_cli("plan", "--universe", "u.csv", "--dataset", "splits", "--from", "")
    assert result.code == 2, result.out
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert not (work / "ledger.db").exists()


def test_base_url_with_a_space_in_the_host_is_refused(work):
    """Input: `run --base-url "https://exa mple.com"` (a typo'd URL, a space in the host).
    Happened: `_check_base_url` (cli.py) accepts it (urlsplit gives hostname
    'exa mple.com'); the run starts, records the URL as its base_url (which `sync` reuses),
    exit 0 here (no unit in scope); with pending units, each one ends `failed` as
    `connection` after ~23 s of retries.
    Should: `error: invalid --base-url ...`, exit 2, nothing recorded (refuse a hostname
    with whitespace or characters a host cannot have)."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    result = run_cli("run", "--base-url", "https://exa mple.com", "--dataset", "splits")
    assert result.code == 2, result.out
    assert "--base-url" in result.err and result.err.count("\n") == 1
    with sqlite3.connect(work / "ledger.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_sql_json_keeps_columns_of_the_same_name(work):
    """Input: `sql "SELECT 1 AS id, 2 AS id" --format json` (any join selecting `u.id,
    a.id`).
    Happened: `dict(zip(columns, row))` (cli.py `sql`) keeps only the last `id`: the output
    is `[{"id": 2}]`, the first column silently gone (the CSV and table show both).
    Should: every column in the output (e.g. refuse duplicate names with one line, exit
    2, asking for `AS` aliases, or make them unique: `id`, `id_2`)."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    result = run_cli("sql", "SELECT 1 AS id, 2 AS id", "--format", "json")
    if result.code == 2:  # refused, one line: fine
        assert result.err.count("\n") == 1
        return
    records = json.loads(result.out)
    assert sorted(v for record in records for v in record.values()) == [1, 2], result.out


def test_sql_json_is_valid_json_for_infinite_values(work):
    """Input: `sql "SELECT 1e999 AS big" --format json` (or `SELECT rate FROM runs` after
    `run --rate inf`, which is accepted and stored).
    Happened: `json.dumps` writes the bare token `Infinity`, which is not JSON (RFC 8259):
    strict parsers (JavaScript's JSON.parse, Go, Rust serde_json) reject the whole output.
    Should: valid JSON (`allow_nan=False` with a fallback: null or the string "inf")."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    result = run_cli("sql", "SELECT 1e999 AS big, -1e999 AS small", "--format", "json")
    assert result.code == 0

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    json.loads(result.out, parse_constant=refuse)


def test_repair_with_the_wrong_data_folder_refuses_when_the_ledger_lists_one_file(work, server):
    """Input: a ledger with one `done` unit (its file in data/), then
    `repair --data elsewhere` (an existing folder without the file: a typo).
    Happened: `checks/files.py repair` only guards `if missing > 1`: with one file, the
    unit is queued again ("1 unit queued again"), exit 0: the download is marked undone.
    Two files and the same typo are refused (exit 2, "every one of the 2 files the ledger
    lists is missing ... wrong --data?"), as docs/commands.md promises for every ledger.
    Should: refused the same way (`missing >= 1`), the unit still `done`."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31").code == 0
    assert run_cli("run", "--base-url", server.url).code == 0
    (work / "elsewhere").mkdir()
    result = run_cli("repair", "--data", "elsewhere")
    with sqlite3.connect(work / "ledger.db") as db:
        states = db.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall()
    assert states == [("done", 1)], result.out
    assert result.code == 2 and "wrong --data" in result.err


def test_serve_refuses_a_negative_rate_limit(tmp_path):
    """Input: `serve --port 0 --rate-limit -1` (also 0 and nan).
    Happened: `--rate-limit` has no bound (cli.py `serve`): the server starts and limits
    nothing, silently (every other number of `serve` is bounded: --rate-burst, --latency,
    --fault-rate ...).
    Should: `error: Invalid value for '--rate-limit' ...`, exit 2 (min > 0)."""
    try:
        done = subprocess.run(
            cli_command("serve", "--port", "0", "--rate-limit", "-1"),
            cwd=tmp_path,
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("serve --rate-limit -1 was accepted: the server ran until killed")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_a_universe_error_names_the_line_its_row_begins_on(work):
    """A quoted name spanning two lines: the bad row after it is line 4 of the file (rows
    were numbered as rows, so it was called line 3)."""
    (work / "u.csv").write_text('ticker,name\nAAPL,"Apple\nInc"\nb@d,Bad\n', encoding="utf-8")
    result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    assert result.code == 2 and "u.csv line 4: invalid ticker 'b@d'" in result.err, result.err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("export", "--to", ""), "error: --to is empty"),
        (("import", "--from", ""), "error: --from is empty"),
        (("import", "--from", "nothere.db"), "error: no ledger to import at nothere.db"),
    ],
)
def test_export_and_import_say_what_is_wrong_with_their_other_ledger(work, args, said):
    """Found by a new user's review: `export --to ''` said "ledger path is a folder, not a
    file: .", and `import --from nothere.db` "run `polyledger plan` first"."""
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    result = run_cli(*args, "--ledger", "ledger.db" if args[0] == "export" else "new.db")
    assert result.code == 2 and result.err.startswith(said) and result.err.count("\n") == 1, result
    assert not (work / "new.db").exists()

"""plan -> run -> audit against the stand-in server, compared with the truth bar for bar."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import subprocess

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    LISTINGS,
    UNKNOWN,
    cli_command,
    ledger_states,
    python_env,
    read_dataset,
    run_cli,
    run_side_by_side,
    truth,
    wait_for,
    write_universe,
)

from polyledger.periods import unit_periods
from polyledger.testing import Listing, StandInServer, SyntheticMarket
from polyledger.testing import server as standin_server

D = dt.date
TICKERS = [listing.ticker for listing in LISTINGS] + [UNKNOWN]


def expected_dataset(market, dataset, tickers, start, end) -> pl.DataFrame:
    frames = [truth(market, dataset, t, start, end) for t in tickers]
    return pl.concat(frames).sort("ticker", "timestamp")


def unit_rows(ledger_path) -> dict[tuple[str, str, str], tuple[str, int]]:
    with sqlite3.connect(ledger_path) as connection:
        rows = connection.execute("SELECT dataset, ticker, period_start, state, rows FROM units").fetchall()
    return {(d, t, p): (s, r) for d, t, p, s, r in rows}


def everything_written(work) -> str:
    """Every byte the run left behind, as text (ledger dump, logs, parquet metadata)."""
    parts = []
    with sqlite3.connect(work / "ledger.db") as connection:
        parts.extend(connection.iterdump())
    for path in work.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".csv", ".txt"):
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
        if path.is_file() and path.suffix == ".parquet":
            metadata = pq.read_metadata(path)
            parts.append(repr(metadata.metadata))
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


class BurstThenRefusals:
    """Stands in for the `time` module of the stand-in server, whose token bucket is its only
    reader (once per request that passes the key check, under the server's lock). Time stands
    still for the first `burst + refusals` requests, so the burst is served and the next
    `refusals` requests are told 429; then a whole second passes per request, so every later
    one finds a token. The server refuses exactly `refusals` requests, however fast or busy
    the machine is: how well a client settles under a limit in real time is a figure for
    `bench/ratelimit.py`, and on a virtual clock a test in `tests/test_ratelimit.py`."""

    def __init__(self, rate_limit: float, refusals: int) -> None:
        self.frozen_reads = int(max(1.0, rate_limit)) + refusals  # the stand-in's burst is max(1, rate)
        self.reads = 0
        self.now = 1000.0

    def monotonic(self) -> float:
        self.reads += 1
        if self.reads > self.frozen_reads:
            self.now += 1.0
        return self.now


def refuse_after_burst(monkeypatch: pytest.MonkeyPatch, rate_limit: float, refusals: int) -> None:
    """Make a stand-in limited to `rate_limit` refuse exactly `refusals` requests, after its burst."""
    monkeypatch.setattr(standin_server, "time", BurstThenRefusals(rate_limit, refusals))


def client_counts(output: str) -> tuple[int, int]:
    """(requests sent, 429s received) as a run reports them in its summary."""
    found = re.search(r"([\d,]+) requests,\s+(\d+) throttled \(429\)", output)
    assert found, output
    return int(found[1].replace(",", "")), int(found[2])


def request_errors(output: str) -> dict[str, int]:
    """The request errors a run reports in its summary, by class."""
    line = re.search(r"request errors \(retried or final\): (.*)", output)
    assert line, output
    return {name: int(count) for name, count in re.findall(r"(\w+)=(\d+)", line[1])}


def assert_every_refusal_was_sent_again(stats: dict, refusals: int) -> None:
    """Each page was answered once; the only repeats are the refused requests, sent again."""
    targets = [t for t in stats["targets"] if t.startswith("/v2/aggs/")]
    assert stats["by_status"] == {200: len(set(targets)), 429: refusals}, stats["by_status"]
    assert len(targets) == len(set(targets)) + refusals


def test_full_run_equals_the_truth_bar_for_bar(work, market):
    start, end = D(2023, 1, 1), D(2023, 12, 31)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        write_universe(work / "universe.csv", TICKERS)
        assert run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end).code == 0
        assert (
            run_cli(
                "plan", "--universe", "universe.csv", "--dataset", "day", "--from", "2022-03-01", "--to", end
            ).code
            == 0
        )
        result = run_cli(
            "run", "--base-url", server.url, "--workers", "8", "--rate", "2000", "--log-file", "run.log"
        )
        assert result.code == 0, result.err + result.out
        bar_requests = server.stats.bars_requests
        requested = [t for t in server.stats.snapshot()["targets"] if t.startswith("/v2/aggs/")]

    # every unit settled, and each unit's rows equal the truth for its own period
    units = unit_rows(work / "ledger.db")
    assert len(units) == len(TICKERS) * 12 + len(TICKERS) * 2
    for (dataset, ticker, period_start), (state, rows) in units.items():
        first = D.fromisoformat(period_start)
        grain = "month" if dataset == "minute" else "year"
        last = next(p_end for p_start, p_end in unit_periods(grain, first, end) if p_start == first)
        expected = truth(market, dataset, ticker, first, last).height
        assert rows == expected, (dataset, ticker, period_start)
        assert state == ("done" if expected else "empty_confirmed"), (dataset, ticker, period_start)

    # the files, read in one line, equal the truth exactly
    assert_frame_equal(
        read_dataset(work / "data", "minute"), expected_dataset(market, "minute", TICKERS, start, end)
    )
    assert_frame_equal(
        read_dataset(work / "data", "day"), expected_dataset(market, "day", TICKERS, D(2022, 3, 1), end)
    )

    # pagination was followed, never repeated; coalescing needs no more than a request per
    # page of each month, and no fewer than the pages the ticker's bars fill
    assert len(set(requested)) == len(requested), "a request was sent twice"
    per_month = lower_bound = 0
    for ticker in TICKERS:
        for p_start, p_end in unit_periods("month", start, end):
            per_month += max(1, -(-truth(market, "minute", ticker, p_start, p_end).height // 5_000))
        lower_bound += max(1, -(-truth(market, "minute", ticker, start, end).height // 5_000))
        lower_bound += 1  # its day bars: 22 months fit one request
    assert lower_bound <= bar_requests <= per_month + len(TICKERS) * 2
    assert bar_requests <= 1.2 * lower_bound

    # the empty months are the ones outside listings, and the unknown ticker has no data
    assert units[("minute", "NEWCO", "2023-05-01")] == ("empty_confirmed", 0)
    assert units[("minute", "GONE", "2023-05-01")] == ("empty_confirmed", 0)
    audit = run_cli("audit", "--json")
    assert audit.code == 0
    report = json.loads(audit.out)
    assert report["complete"] is True
    minute = next(d for d in report["datasets"] if d["dataset"] == "minute")
    assert minute["tickers_without_data"] == [UNKNOWN]

    assert API_KEY not in everything_written(work)
    assert API_KEY not in result.out + result.err + audit.out


def test_twenty_tickers_by_36_months(work):
    """The acceptance run: 20 tickers x 36 months of minute bars, every unit settled, data equal to the truth."""
    from polyledger.testing import Listing, SyntheticMarket

    listings = [Listing(f"S{i:02d}", bars_per_day=30 + 25 * i) for i in range(18)]
    listings += [Listing("LATE", list_date=D(2023, 2, 1)), Listing("EARLY", delist_date=D(2022, 6, 30))]
    market = SyntheticMarket(listings, seed=3)
    tickers = [listing.ticker for listing in listings]
    start, end = D(2021, 1, 1), D(2023, 12, 31)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=10_000) as server:
        write_universe(work / "universe.csv", tickers)
        assert run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end).code == 0
        result = run_cli("run", "--base-url", server.url, "--workers", "16", "--rate", "5000")
        assert result.code == 0, result.err
    with sqlite3.connect(work / "ledger.db") as connection:
        states = dict(connection.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
    assert set(states) <= {"done", "empty_confirmed"} and sum(states.values()) == 20 * 36
    assert_frame_equal(
        read_dataset(work / "data", "minute"), expected_dataset(market, "minute", tickers, start, end)
    )
    assert run_cli("audit").code == 0


def test_not_entitled_months_fail_without_retry(work, market):
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 3, 1)) as server:
        write_universe(work / "universe.csv", ["SIRI"])
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-04-30")
        result = run_cli("run", "--base-url", server.url, "--workers", "1")
        requests = server.stats.bars_requests
    assert result.code == 1  # the job is not complete
    units = unit_rows(work / "ledger.db")
    assert units[("minute", "SIRI", "2023-01-01")][0] == "failed"
    assert units[("minute", "SIRI", "2023-02-01")][0] == "failed"
    assert units[("minute", "SIRI", "2023-03-01")][0] == "done"
    # the four months are asked together once, then (403) one by one; a 403 is never retried
    assert requests == 1 + 4
    with sqlite3.connect(work / "ledger.db") as connection:
        classes = connection.execute(
            "SELECT DISTINCT error_class FROM units WHERE state = 'failed'"
        ).fetchall()
    assert classes == [("not_entitled",)]
    audit = run_cli("audit", "--json")
    assert audit.code == 1
    failures = json.loads(audit.out)["datasets"][0]["failures"]
    assert failures[0]["error_class"] == "not_entitled" and failures[0]["units"] == 2


def test_bad_key_stops_at_once_and_leaves_every_unit_pending(work, market, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "pk_WRONG_key_123456")
    with StandInServer(market, api_keys=(API_KEY,), latency=0.01) as server:
        write_universe(work / "universe.csv", ["AAPL", "SIRI", "PLUG"])
        run_cli("plan", "--universe", "universe.csv", "--from", "2022-01-01", "--to", "2023-12-31")
        result = run_cli("run", "--base-url", server.url, "--workers", "8", "--rate", "1000")
        requests = server.stats.bars_requests
    assert result.code == 1
    assert "API key was refused" in result.out + result.err
    assert "pk_WRONG_key_123456" not in result.out + result.err
    assert requests <= 8  # every worker stops after its first refusal, at most
    with sqlite3.connect(work / "ledger.db") as connection:
        rows = connection.execute(
            "SELECT state, attempts, count(*) FROM units GROUP BY state, attempts"
        ).fetchall()
    assert rows == [("pending", 0, 72)]


def test_unadjusted_choice_is_recorded_and_mixing_is_refused(work, market):
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        write_universe(work / "universe.csv", ["TINY"])
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-02-28")
        assert run_cli("run", "--base-url", server.url, "--unadjusted").code == 0
        with sqlite3.connect(work / "ledger.db") as connection:
            assert connection.execute("SELECT DISTINCT adjusted FROM units").fetchall() == [(0,)]
        run_cli("plan", "--universe", "universe.csv", "--from", "2022-12-01", "--to", "2023-02-28")
        refused = run_cli("run", "--base-url", server.url)
    assert refused.code == 2
    assert "unadjusted" in refused.err and refused.err.count("\n") == 1


@pytest.mark.parametrize("env_name", ["POLYGON_API_KEY", "MASSIVE_API_KEY"])
def test_either_key_variable_works(work, market, monkeypatch, env_name):
    monkeypatch.delenv("POLYGON_API_KEY")
    monkeypatch.setenv(env_name, API_KEY)
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        write_universe(work / "universe.csv", ["TINY"])
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-01-31")
        monkeypatch.setenv("POLYGON_BASE_URL", server.url)
        assert run_cli("run").code == 0


def test_faults_on_any_page_are_retried_until_the_data_is_exact(work, market):
    """12% of bar requests fail in every transient way, slow answers included. With
    4,000-bar pages most requests are page 2 or later. The run still ends with the truth,
    no false empty month, and the key nowhere in what it left. A slow answer never comes
    while the run lasts (the stand-in wakes its sleepers when it stops), so the client's
    timeout always fires first, however busy the machine is; the timeout itself is generous,
    so an ordinary answer on a loaded machine is not mistaken for a slow one."""
    from polyledger.testing import FaultPlan

    tickers = ["AAPL", "BRK.B", "SIRI", "NEWCO", "TINY", UNKNOWN]
    start, end = D(2022, 1, 1), D(2023, 9, 30)
    kinds = ("429", "500", "502", "503", "reset", "truncated", "invalid_json", "bad_shape", "slow")
    faults = FaultPlan(rate=0.12, kinds=kinds, seed=5, retry_after=False, slow_seconds=3600)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=4_000, faults=faults, rate_limit=150) as server:
        write_universe(work / "universe.csv", tickers)
        run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end)
        result = run_cli(
            "run",
            "--base-url",
            server.url,
            "--workers",
            "8",
            "--rate",
            "300",
            "--timeout",
            "2",
            "--log-file",
            "run.log",
        )
        injected = server.stats.snapshot()
    assert result.code == 0, result.out + result.err
    assert "request errors (retried or final):" in result.out
    # the seeded fault sequence is the same on every run: every kind was injected
    faults = injected["faults"]
    assert set(faults) == set(kinds) and sum(faults.values()) >= 15, faults
    # every slow answer ended in the client's timeout (a busy machine may add more, never fewer)
    assert request_errors(result.out)["timeout"] >= faults["slow"]
    assert API_KEY not in everything_written(work) + result.out + result.err
    assert_frame_equal(
        read_dataset(work / "data", "minute"), expected_dataset(market, "minute", tickers, start, end)
    )
    for (dataset, ticker, period_start), (state, rows) in unit_rows(work / "ledger.db").items():
        first = D.fromisoformat(period_start)
        last = next(p_end for p_start, p_end in unit_periods("month", first, end) if p_start == first)
        assert rows == truth(market, dataset, ticker, first, last).height
        assert state in ("done", "empty_confirmed") and (state == "empty_confirmed") == (rows == 0)


def test_a_server_side_rate_limit_is_retried_until_the_data_is_exact(work, market, monkeypatch):
    """The server allows 10 requests/s and refuses 2 requests after its burst; the client,
    starting at 40/s, sends each refused request again, counts every 429, and gets every bar."""
    refuse_after_burst(monkeypatch, rate_limit=10, refusals=2)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=2_000, rate_limit=10) as server:
        write_universe(work / "universe.csv", ["AAPL"])
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-03-31")
        result = run_cli("run", "--base-url", server.url, "--workers", "8", "--rate", "40")
        stats = server.stats.snapshot()
    assert result.code == 0, result.out + result.err
    assert_every_refusal_was_sent_again(stats, refusals=2)
    assert client_counts(result.out) == (stats["bars_requests"], 2)
    assert request_errors(result.out) == {"http_429": 2}
    with sqlite3.connect(work / "ledger.db") as connection:
        assert connection.execute("SELECT sum(requests) FROM units").fetchone() == (stats["bars_requests"],)
        # no unit paid for a 429 with an attempt: each was settled by its first one
        assert connection.execute("SELECT state, attempts, count(*) FROM units GROUP BY 1, 2").fetchall() == [
            ("done", 1, 3)
        ]
    assert_frame_equal(
        read_dataset(work / "data", "minute"),
        expected_dataset(market, "minute", ["AAPL"], D(2023, 1, 1), D(2023, 3, 31)),
    )


def test_two_processes_on_one_key_retry_the_server_limit_and_get_every_bar(work, monkeypatch):
    """Two `run` processes share one key (and one ledger) against a server allowing 20
    requests/s that refuses 4 requests after its burst; each starts at 20/s. Between them they
    send every refused request again, report every 429, and get every bar, each unit once.
    (A burst of 20 lets each process see successes before its first 429, so it lowers its rate
    from evidence, not from one lone success: the run stays short.)"""
    tickers = [f"T{i:03d}" for i in range(40)]  # one month each: one request per unit
    market = SyntheticMarket([Listing(t, bars_per_day=5) for t in tickers], seed=3)
    write_universe(work / "universe.csv", tickers)
    run_cli("plan", "--universe", "universe.csv", "--from", "2023-03-01", "--to", "2023-03-31")
    refuse_after_burst(monkeypatch, rate_limit=20, refusals=4)  # the server runs in this process
    with StandInServer(market, api_keys=(API_KEY,), rate_limit=20) as server:
        runs = run_side_by_side(
            ["run", "--base-url", server.url, "--workers", "4", "--rate", "20"], 2, cwd=work, timeout=120
        )
        stats = server.stats.snapshot()
    assert [run.code for run in runs] == [0, 0], runs
    assert_every_refusal_was_sent_again(stats, refusals=4)
    assert len(set(stats["requested"])) == 40  # one page per unit: no unit fetched twice
    sent, throttled = zip(*(client_counts(run.out) for run in runs), strict=True)
    assert (sum(sent), sum(throttled)) == (stats["bars_requests"], 4)
    assert ledger_states(work / "ledger.db") == {"done": 40}
    assert_frame_equal(
        read_dataset(work / "data", "minute"),
        expected_dataset(market, "minute", tickers, D(2023, 3, 1), D(2023, 3, 31)),
    )


# --- one ledger, one data folder (found by a review) -------------------------------------


def _files_of(ledger: str) -> list[tuple[str, int]]:
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT file_path, rows FROM units WHERE state = 'done' ORDER BY id").fetchall()


def _a_done_b_planned(work, server) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Ledger A: AAPL's January 2023 done in ./data (the default); ledger B: January 1-10
    planned. A's file and its rows."""
    write_universe(work / "u.csv", ["AAPL"])
    for ledger, end in (("A.db", "2023-01-31"), ("B.db", "2023-01-10")):
        planned = run_cli(
            "plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", end, "--ledger", ledger
        )
        assert planned.code == 0, planned.err
    assert run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "A.db").code == 0
    ((path, rows),) = _files_of("A.db")
    return path, rows


def test_a_second_ledger_never_writes_into_anothers_data_folder(work, server):
    """Ledger A holds AAPL's January; ledger B (another --ledger, the same default --data)
    planned January 1-10 would replace A's month file with ten days while A's audit still
    said COMPLETE. Refused on one line, before any request, A's file as it was; with its
    own folder B runs."""
    path, rows = _a_done_b_planned(work, server)
    before, asked = (work / "data" / path).read_bytes(), server.stats.total
    refused = run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "B.db")
    assert (refused.code, refused.out) == (2, "") and server.stats.total == asked
    assert refused.err.startswith("error: data folder data holds another ledger's files")
    assert len(refused.err.strip().splitlines()) == 1
    assert (work / "data" / path).read_bytes() == before and pl.read_parquet(
        work / "data" / path
    ).height == rows
    assert (
        run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "B.db", "--data", "b").code
        == 0
    )


def test_one_ledgers_files_never_spread_over_two_folders_and_a_moved_folder_is_found(work, server):
    """`run --data elsewhere` on a ledger whose files are in ./data put its new months there:
    no folder held the download any more. Refused on one line; the same folder moved (its
    marker and files with it) is the ledger's, and so is a folder an earlier version
    marked without naming its ledger, once it holds the ledger's files."""
    write_universe(work / "u.csv", ["AAPL", "TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    assert run_cli("run", "--workers", "1", "--base-url", server.url).code == 0
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-02-28")
    refused = run_cli("run", "--workers", "1", "--base-url", server.url, "--data", "elsewhere")
    home = (work / "data").resolve()
    assert refused.code == 2 and f"is not this ledger's: it uses {home} " in refused.err, refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert not (work / "elsewhere").exists() or not list((work / "elsewhere").iterdir())
    (work / "data").rename(work / "moved")
    marker = work / "moved" / "polyledger-data.json"
    folder_id = json.loads(marker.read_text(encoding="utf-8"))["id"]
    marker.write_text('{"adjusted": true}\n', encoding="utf-8")  # as an earlier version wrote it
    moved = run_cli("run", "--workers", "1", "--base-url", server.url, "--data", "moved")
    assert moved.code == 0, moved.err + moved.out
    assert run_cli("audit", "--deep", "--data", "moved").code == 0
    named = json.loads(marker.read_text(encoding="utf-8"))
    assert named["ledger"] and named["id"] == folder_id  # named for this ledger again, the same folder
    recorded = _recorded_folder("ledger.db")
    assert (recorded["id"], recorded["location"]) == (folder_id, str((work / "moved").resolve()))


def _recorded_folder(ledger_path) -> dict:  # type: ignore[no-untyped-def]
    with sqlite3.connect(ledger_path) as db:
        (value,) = db.execute("SELECT value FROM settings WHERE key = 'data_folder'").fetchone()
    return json.loads(value)


def test_two_runs_on_a_new_ledger_do_not_split_its_files_over_two_data_folders(work, server):
    """Found by a review: the check looked for the ledger's stored files, so while the
    first run of a new ledger had settled nothing, a second `run` with another `--data`
    (another terminal, another working directory's `./data`) was accepted, and the
    ledger's files ended up in two folders, each an incomplete download the ledger called
    complete. The ledger records the folder its first run marked (the marker's own id):
    the second run is refused on one line, exit 2, naming that folder, and B stays as it
    was; the first run finishes; a folder moved whole is still the ledger's."""
    write_universe(work / "u.csv", ["TINY", "MID3", "MID2", "BF-B"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-02-29").code == 0
    server.latency = 1.5  # a slow API: the first run settles nothing for a while
    env = dict(python_env(), POLYGON_API_KEY=API_KEY)
    first = subprocess.Popen(
        cli_command("run", "--workers", "1", "--data", "A", "--base-url", server.url),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: (work / "A" / "polyledger-data.json").exists(), 60)
        with sqlite3.connect(work / "ledger.db") as db:  # the premise: nothing settled yet
            assert db.execute("SELECT count(*) FROM units WHERE state = 'done'").fetchone()[0] == 0
        second = run_cli("run", "--data", "B", "--base-url", server.url)
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert (second.code, second.out) == (2, ""), second.out
    assert second.err.startswith(
        f"error: data folder B is not this ledger's: it uses {(work / 'A').resolve()} "
    )
    assert len(second.err.strip().splitlines()) == 1
    assert not (work / "B").exists()  # no marker, no file, not even the folder (found by a review)
    server.latency = 0.0
    (work / "A").rename(work / "moved")
    assert run_cli("run", "--data", "moved", "--base-url", server.url).code == 0
    assert run_cli("audit", "--deep", "--data", "moved").code == 0
    assert run_cli("run", "--data", "A", "--base-url", server.url).code == 2  # a new A is not it
    assert not (work / "A").exists()


def test_two_first_runs_starting_together_on_two_folders_agree_on_one(tmp_path, monkeypatch):
    """Two first runs of a new ledger, each on its own new folder, both read no recorded
    folder: each checks its folder, then claims the ledger's setting (atomic), and only
    then marks the folder: the loser is refused, naming the winner's folder, its own
    folder untouched. Two on one folder both mark it with the id claimed first (an object
    store's marker is no conditional write: both may write it)."""
    from polyledger.errors import InputError
    from polyledger.ledger import Ledger
    from polyledger.storage import BarStore
    from polyledger.storage import home as home_module

    first, second = BarStore(tmp_path / "A"), BarStore(tmp_path / "B")
    with Ledger(tmp_path / "ledger.db") as ledger:
        home_module.hold_home(ledger, first, adjusted=True)
        recorded = home_module.home_of(ledger)
        assert recorded is not None and recorded.id == first.marker()["id"]
        with monkeypatch.context() as race:  # the others read the setting before the first claimed it
            race.setattr(home_module, "home_of", lambda _ledger: None)
            with pytest.raises(InputError, match=f"data folder {second} is not this ledger's: it uses "):
                home_module.hold_home(ledger, second, adjusted=True)
            looks, real = iter([None]), type(first).marker  # ... and A's marker too (its first look)
            race.setattr(type(first), "marker", lambda store: next(looks, "now") and real(store))
            home_module.hold_home(ledger, first, adjusted=True)
        assert second.marker() is None and home_module.home_of(ledger) == recorded
        assert first.marker()["id"] == recorded.id
        home_module.hold_home(ledger, first, adjusted=True)  # its own folder, again: accepted
        with pytest.raises(InputError, match="is not this ledger's"):
            home_module.hold_home(ledger, second, adjusted=True)
        assert second.marker() is None


def test_a_new_ledger_never_takes_an_earlier_versions_folder_from_the_ledger_whose_files_it_holds(
    work, server
):
    """Found by a review: an earlier version's marker names no ledger; a new ledger B, which
    stored nothing, named ledger A's folder for itself on its first run (its ten days
    replacing A's month), and A was refused on its own folder from then on. B is refused;
    A's next run names the folder for A."""
    path, rows = _a_done_b_planned(work, server)
    marker = work / "data" / "polyledger-data.json"
    marker.write_text('{"adjusted": true}\n', encoding="utf-8")  # as an earlier version wrote it
    with sqlite3.connect("A.db") as db:  # A, made by the earlier version, had no id yet
        db.execute("DELETE FROM settings WHERE key IN ('ledger_id', 'data_folder')")
    refused = run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "B.db")
    assert refused.code == 2 and "holds files of a ledger its marker does not name" in refused.err, (
        refused.err
    )
    assert json.loads(marker.read_text(encoding="utf-8")) == {"adjusted": True}
    assert pl.read_parquet(work / "data" / path).height == rows
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-02-28", "--ledger", "A.db")
    again = run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "A.db")
    assert again.code == 0, again.err
    with sqlite3.connect("A.db") as db:
        (named,) = db.execute("SELECT value FROM settings WHERE key = 'ledger_id'").fetchone()
    folder = _recorded_folder("A.db")["id"]
    assert json.loads(marker.read_text(encoding="utf-8")) == {"adjusted": True, "ledger": named, "id": folder}


def _two_ledgers_one_default_folder(work, server) -> str:  # type: ignore[no-untyped-def]
    """Ledger A: AAPL's January 2023 in ./data (the default); ledger B: AAPL January 1-10
    in its own folder ./b, as the refusal tells a second ledger to do. A's file's path."""
    path, _rows = _a_done_b_planned(work, server)
    done_b = run_cli("run", "--workers", "1", "--base-url", server.url, "--ledger", "B.db", "--data", "b")
    assert done_b.code == 0, done_b.err
    return path


def test_repair_never_quarantines_another_ledgers_files(work, server):
    """Found by a review: `repair --ledger B.db` without --data (./data: A's folder) moved
    A's January into .quarantine/ (a row_mismatch in B's eyes). Refused on one line."""
    path = _two_ledgers_one_default_folder(work, server)
    before = (work / "data" / path).read_bytes()
    repaired = run_cli("repair", "--ledger", "B.db")
    assert repaired.code == 2 and "holds another ledger's files" in repaired.err, repaired.err + repaired.out
    assert (work / "data" / path).read_bytes() == before


def test_open_never_reads_another_ledgers_folder_as_its_own(work, server):
    """Found by a review: polyledger.open("B.db", "data") returned A's whole January as B's."""
    import polyledger
    from polyledger.errors import InputError

    _two_ledgers_one_default_folder(work, server)
    with pytest.raises(InputError, match="holds another ledger's files"):
        polyledger.open("B.db", "data")
    with polyledger.open("B.db", "b") as own:
        assert own.bars("minute", tickers=["AAPL"]).collect().height == _files_of("B.db")[0][1]


def test_a_month_fetched_again_with_no_bars_now_keeps_its_old_file_aside(work, server):
    """Found by a review: a done month queued again (here `plan`, the universe now naming
    the company; `sync`'s re-read, `retry --stale` and `retry --flagged` do the same) whose
    answer has no bars now settled `empty_confirmed` and deleted its file: the bars
    downloaded were gone, no copy anywhere. The file is moved to `.quarantine/` (as
    `repair` moves a `withdrawn_file`), the run says where, and a read of the dataset
    folder agrees with the ledger."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    assert run_cli("run", "--base-url", server.url).code == 0
    with sqlite3.connect(work / "ledger.db") as db:
        (rows, path) = db.execute("SELECT rows, file_path FROM units WHERE state = 'done'").fetchone()
    digest = hashlib.sha256((work / "data" / path).read_bytes()).hexdigest()

    # the API has no January bars for TINY any more (a glitch, a symbol moved, a correction)
    server.market = SyntheticMarket([Listing("TINY", list_date=D(2024, 6, 3), bars_per_day=5)], seed=11)
    (work / "u2.csv").write_text("ticker,composite_figi\nTINY,BBG000TINY01\n", encoding="utf-8")
    replanned = run_cli("plan", "--universe", "u2.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    assert replanned.code == 0 and "queued again" in replanned.out, replanned.out
    again = run_cli("run", "--base-url", server.url)
    assert again.code == 0, again.err
    assert ledger_states(work / "ledger.db") == {"empty_confirmed": 1}  # fetched again, no bars now

    assert not (work / "data" / path).exists()
    (kept,) = (work / "data" / ".quarantine").rglob("*.parquet")
    assert kept.relative_to(work / "data").as_posix().endswith("/" + path)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest and pl.read_parquet(kept).height == rows
    said = kept.relative_to(work / "data").as_posix()
    assert "ticker=TINY" in again.err and said in again.err, again.err  # the run says where it is
    assert not list((work / "data" / "minute").rglob("*.parquet"))  # the folder read agrees
    assert run_cli("audit", "--deep").code == 0


def test_a_first_run_killed_before_it_marked_its_folder_leaves_it_to_the_next_run_there(tmp_path):
    """A first run killed between claiming its folder and writing the id into its marker:
    the next run on that folder marks it (any other folder is refused); once marked, a
    folder without the id is never the ledger's, not even a new one where the ledger's
    was (that one moved, its marker with it)."""
    from polyledger.errors import InputError
    from polyledger.ledger import Ledger
    from polyledger.storage import BarStore
    from polyledger.storage.home import SETTING, hold_home, home_of

    folder, other = BarStore(tmp_path / "A"), BarStore(tmp_path / "B")
    folder.ensure_writable()
    where = folder.absolute_location()
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.claim_setting(SETTING, json.dumps({"id": "c" * 32, "location": where, "unmarked": True}))
        with pytest.raises(InputError, match=f"is not this ledger's: it uses {where} "):
            hold_home(ledger, other)
        hold_home(ledger, folder)
        assert folder.marker()["id"] == "c" * 32 and home_of(ledger).marked
        (tmp_path / "A").rename(tmp_path / "moved")
        folder.ensure_writable()  # a new, empty folder where the ledger's was
        with pytest.raises(InputError, match=f"data folder {folder} is not this ledger's"):
            hold_home(ledger, folder)
        assert folder.marker() is None
        hold_home(ledger, BarStore(tmp_path / "moved"))
        assert home_of(ledger).location == str((tmp_path / "moved").resolve())


def test_repair_and_open_refuse_another_folder_of_the_same_ledger(work, server):
    """A folder marked for this ledger by a run it did not keep (a copy, or the marker a
    losing first run left) is not the ledger's folder: `repair` would queue every month
    again as missing, a read would find none of its files. Both refuse it on one line,
    naming the folder the ledger uses; a folder without a marker is read as before."""
    import polyledger
    from polyledger.errors import InputError

    path, _rows = _a_done_b_planned(work, server)
    ledger_id = json.loads((work / "data" / "polyledger-data.json").read_text(encoding="utf-8"))["ledger"]
    (work / "other").mkdir()
    (work / "other" / "polyledger-data.json").write_text(
        json.dumps({"adjusted": True, "id": "f" * 32, "ledger": ledger_id}), encoding="utf-8"
    )
    home = (work / "data").resolve()
    repaired = run_cli("repair", "--ledger", "A.db", "--data", "other")
    assert repaired.code == 2 and f"is not this ledger's: it uses {home} " in repaired.err, repaired.err
    assert len(repaired.err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="is not this ledger's: it uses "):
        polyledger.open("A.db", "other")
    with polyledger.open("A.db", "data") as own:
        assert own.bars("minute", tickers=["AAPL"]).collect().height > 0
    assert run_cli("repair", "--ledger", "A.db").code == 0
    assert (work / "data" / path).exists()

"""Nothing lost, ever: an API that stays down, a full disk, broken pagination, edited
ledgers, damaged files, Ctrl-C and repeated kill -9."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    STORED_COLUMNS,
    cli_command,
    ledger_states,
    python_env,
    read_dataset,
    run_cli,
    truth,
    wait_for,
    write_universe,
)

from polyledger.bars import BAR_SCHEMA
from polyledger.checks.files import deep_check
from polyledger.errors import FatalRunError, StorageError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.polygon.breaker import CircuitBreaker
from polyledger.storage import BarStore, LocalStore, unit_relative_path
from polyledger.testing import StandInServer

D = dt.date


def expected(market, tickers, start, end) -> pl.DataFrame:
    return pl.concat([truth(market, "minute", t, start, end) for t in tickers]).sort("ticker", "timestamp")


class GatedServer(StandInServer):
    """The stand-in answering only as many requests as the test allows; the others wait
    at the gate. A client with a request at the gate is mid-work and cannot finish: a
    deterministic moment to interrupt or kill it, whatever the machine's speed."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._gate = threading.Condition()
        self.allowed = self.answered = self.waiting = self.arrived = 0

    def _sleep(self, seconds: float) -> None:  # called once before every response is sent
        with self._gate:
            self.arrived += 1
            self.waiting += 1
            while self.answered >= self.allowed and not self._stopping.is_set():
                self._gate.wait()
            self.waiting -= 1
            self.answered += 1
            self._gate.notify_all()
        super()._sleep(seconds)

    def allow(self, answers: int) -> None:
        with self._gate:
            self.allowed += answers
            self._gate.notify_all()

    def held(self) -> bool:
        """Every allowed answer is out and a request waits at the gate."""
        with self._gate:
            return self.answered == self.allowed and self.waiting > 0

    def counts(self) -> tuple[int, int]:
        """Requests that reached the gate so far, and those waiting there now."""
        with self._gate:
            return self.arrived, self.waiting

    def release_waiting(self) -> None:
        """Answer whatever waits (a dead client's requests), and wait until it is out. A
        request the dead client sent before it died may reach the gate only now (read late
        from its socket): each round lets through whatever waits by then."""
        with self._gate:
            while self.waiting:
                self.allowed = self.answered + self.waiting
                self._gate.notify_all()
                self._gate.wait()

    def stop(self) -> None:
        with self._gate:
            self._stopping.set()
            self._gate.notify_all()
        super().stop()


def read_until(stream, marker: bytes) -> bool:  # type: ignore[no-untyped-def]
    """Read a child's output line by line until a line holds `marker` (False at its end)."""
    for line in iter(stream.readline, b""):
        if marker in line:
            return True
    return False


def test_api_down_stops_within_bounded_time_and_units_stay_retryable(work, market):
    write_universe(work / "u.csv", ["AAPL", "SIRI", "PLUG", "TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    with StandInServer(market, api_keys=(API_KEY,), always_status=500) as server:
        result = run_cli(
            "run", "--base-url", server.url, "--rate", "200", "--give-up-after", "3", "--workers", "8"
        )
        assert result.code == 1
        assert "did not recover within 3s" in result.out + result.err  # the breaker's bound, not a timer
        # it stopped sending: the requests that tripped the breaker, those already in flight
        # (one per worker), and one probe (the second would come after the 3 s)
        assert server.stats.bars_requests <= CircuitBreaker().min_samples + 8 + 1, server.stats.bars_requests
        assert ledger_states(work / "ledger.db") == {"pending": 48}  # nothing burnt into failed

        server.always_status = None  # the API is back
        assert run_cli("run", "--base-url", server.url, "--rate", "500").code == 0
    assert set(ledger_states(work / "ledger.db")) <= {"done", "empty_confirmed"}


class DiskFullStore(LocalStore):
    """Writes half of the Nth file, then the disk is full."""

    def __init__(self, root, fail_on: int) -> None:
        super().__init__(root)
        self.fail_on = fail_on
        self.writes = 0

    def _write_bytes(self, handle, payload: bytes) -> None:
        self.writes += 1
        if self.writes >= self.fail_on:
            handle.write(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        handle.write(payload)


def test_disk_full_stops_the_run_with_nothing_half_written(work, market):
    tickers = ["AAPL", "SIRI", "PLUG"]
    write_universe(work / "u.csv", tickers)
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    with StandInServer(market, api_keys=(API_KEY,)) as server, Ledger(work / "ledger.db") as ledger:
        store = DiskFullStore(work / "data", fail_on=6)
        run = Run(
            ledger, store, api_key=API_KEY, base_url=server.url, options=RunOptions(workers=4, rate=500)
        )
        report = run.execute()
        assert report.outcome == "stopped" and "No space left" in report.message
        counts = ledger_states(work / "ledger.db")
        assert counts.get("running", 0) == 0 and counts.get("failed", 0) == 0
        # five files were written whole; only those whose page's batch settled count as done
        assert counts.get("done", 0) <= 5 and counts.get("pending", 0) >= 31
        assert store.temporaries() == []
        findings = deep_check(ledger, store)
        assert [f for f in findings if f.kind != "stale_file"] == []
        # a stale file is one written whole just before the stop, whose unit went back to
        # pending with its batch; a half-written file would show here too, so each one must
        # be complete, with exactly its unit's bars
        stale = [f.path for f in findings if f.kind == "stale_file"]
        assert len(stale) <= 5  # the five files written before the disk filled up
        for relative in stale:
            ticker, month = relative.split("/")[1].removeprefix("ticker="), int(relative.split("/")[3][-2:])
            first = D(2023, month, 1)
            assert relative == unit_relative_path("minute", ticker, first)
            last = D(2023, month + 1, 1) - dt.timedelta(days=1) if month < 12 else D(2023, 12, 31)
            assert_frame_equal(
                store.read_parquet(relative).select(STORED_COLUMNS), expected(market, [ticker], first, last)
            )

        resumed = Run(
            ledger,
            BarStore(work / "data"),
            api_key=API_KEY,
            base_url=server.url,
            options=RunOptions(workers=4, rate=500),
        ).execute()
        assert resumed.outcome == "finished"
    assert_frame_equal(
        read_dataset(work / "data", "minute"), expected(market, tickers, D(2023, 1, 1), D(2023, 12, 31))
    )


def test_a_full_disk_is_a_storage_error_that_stops_the_run(tmp_path):
    """ENOSPC half-way through a file surfaces as a StorageError, a FatalRunError (the run
    stops and gives its units back instead of failing them one by one), with the reason;
    nothing is left under the final name or as a temporary."""
    store = DiskFullStore(tmp_path / "data", fail_on=1)
    with pytest.raises(StorageError) as raised:
        store.write_unit("minute", "TINY", D(2023, 1, 1), pl.DataFrame(schema=BAR_SCHEMA))
    assert isinstance(raised.value, FatalRunError) and raised.value.error_class == "storage"
    relative = unit_relative_path("minute", "TINY", D(2023, 1, 1))
    assert str(raised.value) == f"cannot write {relative}: No space left on device"
    assert not store.exists(relative) and store.temporaries() == []


def test_pagination_that_does_not_advance_fails_the_unit_without_looping(work, market):
    write_universe(work / "u.csv", ["AAPL", "TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-03-31")
    with StandInServer(market, api_keys=(API_KEY,), page_cap=2_000, broken_next_url={"AAPL"}) as server:
        result = run_cli("run", "--base-url", server.url, "--rate", "500")
        requested = server.stats.snapshot()["requested"]
    assert result.code == 1
    with sqlite3.connect(work / "ledger.db") as connection:
        rows = connection.execute(
            "SELECT ticker, state, error_class FROM units ORDER BY ticker, period"
        ).fetchall()
    assert {(t, s, c) for t, s, c in rows if t == "AAPL"} == {("AAPL", "failed", "pagination")}
    assert all(s == "done" for t, s, c in rows if t == "TINY")
    assert sum(1 for r in requested if r[0] == "AAPL") <= 3 * 2  # two pages per month, then it stops


def test_a_ticker_edited_into_the_ledger_cannot_escape_the_data_folder(work, market):
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    with sqlite3.connect(work / "ledger.db") as connection:
        connection.execute("UPDATE units SET ticker = '../../escaped'")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        result = run_cli("run", "--base-url", server.url)
        assert server.stats.bars_requests == 0
    assert result.code == 1
    with sqlite3.connect(work / "ledger.db") as connection:
        assert connection.execute("SELECT state, error_class FROM units").fetchall() == [
            ("failed", "invalid_ticker")
        ]
    assert not list(work.parent.glob("escaped*")) and not (work / "escaped").exists()


def test_retry_requeues_failed_units_by_class_and_ticker(work, market):
    write_universe(work / "u.csv", ["SIRI", "TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-04-30")
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 3, 1)) as server:
        assert run_cli("run", "--base-url", server.url).code == 1
        none = run_cli("retry")  # default: transient only, and there are none
        assert none.code == 0 and none.out.startswith("0 failed units")
        absent = run_cli("retry", "--class", "http_503")  # a real class, none failed: nothing to do
        assert absent.code == 0 and absent.out.startswith("0 failed units")
        typo = run_cli("retry", "--class", "not_entitle")
        assert (
            typo.code == 2
            and "unknown error class 'not_entitle' (failed classes now: not_entitled)" in typo.err
        )
        assert run_cli("retry", "--dataset", "bogus").code == 2
        assert run_cli("retry", "--stale", "--class", "all").code == 2
        assert run_cli("retry", "--class", "not_entitled", "--ticker", "SIRI").out.startswith("2 failed")
        with sqlite3.connect(work / "ledger.db") as connection:
            rows = connection.execute(
                "SELECT ticker, state, attempts FROM units WHERE period < '2023-03' ORDER BY 1, 2"
            ).fetchall()
        assert rows == [
            ("SIRI", "pending", 0),
            ("SIRI", "pending", 0),
            ("TINY", "failed", 1),
            ("TINY", "failed", 1),
        ]
        server.history_start = None  # the plan was upgraded
        assert run_cli("run", "--base-url", server.url).code == 1  # TINY's months are still failed
        assert run_cli("retry", "--class", "all").out.startswith("2 failed")
        assert run_cli("run", "--base-url", server.url).code == 0
    with sqlite3.connect(work / "ledger.db") as connection:
        history = connection.execute(
            "SELECT a.outcome, a.error_class FROM unit_attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE u.ticker = 'SIRI' AND u.period = '2023-01' ORDER BY a.id"
        ).fetchall()
    assert history == [("failed", "not_entitled"), ("done", None)]


def test_transient_failures_requeue_until_max_attempts(work, market):
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    with (
        StandInServer(market, api_keys=(API_KEY,), always_status=503) as server,
        Ledger(work / "ledger.db") as ledger,
    ):
        from polyledger.polygon.client import RetryPolicy

        options = RunOptions(
            workers=1, rate=1000, max_attempts=3, retry=RetryPolicy(max_retries=1, base_delay=0.001)
        )
        report = Run(
            ledger, BarStore(work / "data"), api_key=API_KEY, base_url=server.url, options=options
        ).execute()
        assert report.stats.outcomes["requeued"] == 2 and report.stats.outcomes["failed"] == 1
        row = ledger.query("SELECT state, attempts, error_class FROM units")[0]
        assert (row.state, row.attempts, row.error_class) == ("failed", 3, "http_503")
        assert server.stats.bars_requests == 3 * 2  # 3 attempts x (1 try + 1 retry)


def test_audit_deep_finds_every_mismatch_and_repair_restores_consistency(work, market):
    tickers = ["SIRI", "PLUG", "TINY"]
    write_universe(work / "u.csv", tickers)
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-06-30")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
        assert run_cli("audit", "--deep").code == 0
        data = work / "data" / "minute"
        (data / "ticker=SIRI/year=2023/month=01/part.parquet").unlink()  # missing
        damaged = data / "ticker=SIRI/year=2023/month=02/part.parquet"
        content = bytearray(damaged.read_bytes())
        content[len(content) // 3] ^= 0xFF  # one flipped byte inside the data: metadata still reads
        damaged.write_bytes(bytes(content))
        cut = data / "ticker=PLUG/year=2023/month=01/part.parquet"
        cut.write_bytes(cut.read_bytes()[:-100])  # truncated: unreadable
        other = data / "ticker=PLUG/year=2023/month=03/part.parquet"
        stray = data / "ticker=NOBODY/year=2023/month=03"
        stray.mkdir(parents=True)
        (stray / "part.parquet").write_bytes(other.read_bytes())  # extra
        (data / "ticker=TINY/year=2023/month=01/.tmp-deadbeef-part.parquet").write_bytes(b"half")  # temporary
        with sqlite3.connect(work / "ledger.db") as connection:  # left by a version that kept it
            connection.execute(
                "UPDATE units SET state = 'empty_confirmed', file_path = NULL "
                "WHERE ticker = 'TINY' AND period = '2023-02'"
            )

        result = run_cli("audit", "--deep", "--json")
        assert result.code == 1
        found = {(f["kind"], f["path"].split("/")[1]) for f in json.loads(result.out)["deep"]["findings"]}
        assert found == {
            ("missing_file", "ticker=SIRI"),
            ("checksum_mismatch", "ticker=SIRI"),
            ("unreadable_file", "ticker=PLUG"),
            ("extra_file", "ticker=NOBODY"),
            ("stray_temporary", "ticker=TINY"),
            ("withdrawn_file", "ticker=TINY"),  # its unit has no bars now
        }
        fixed = run_cli("repair")
        assert "3 units queued again, 3 files quarantined, 1 stray temporaries removed" in fixed.out
        assert not (data / "ticker=TINY/year=2023/month=02/part.parquet").exists()
        assert list((work / "data" / ".quarantine").rglob("part.parquet"))  # the damaged file is kept
        assert run_cli("run", "--base-url", server.url).code == 0
    deep = json.loads(run_cli("audit", "--deep", "--json").out)["deep"]["findings"]
    assert [f["kind"] for f in deep] == ["extra_file"]  # reported, never deleted
    assert (stray / "part.parquet").exists()


def test_audit_deep_reports_a_parquet_file_no_unit_owns_whatever_its_name(work, market):
    """Found by a review: a second Parquet file in a month's folder (`part (1).parquet`, a
    file manager's copy) is read by the folder read docs/data.md gives
    (`data/minute/**/*.parquet`): that month's bars come twice. `audit --deep` looked only
    at files named `part.parquet` and said files and ledger agree. Every `*.parquet` no
    unit owns is an `extra_file` (exit 1), whatever its name; `repair` reports it and
    leaves it where it is, as it does every file no unit owns."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-02-29").code == 0
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
    month = work / "data" / "minute" / "ticker=TINY" / "year=2024" / "month=01"
    copies = [month / "part (1).parquet", month.parent / "PART.PARQUET", month / "notes" / "old.parquet"]
    for copy in copies:
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes((month / "part.parquet").read_bytes())
    (month / "readme.txt").write_text("not a Parquet file: no reader of *.parquet takes it\n")

    folder = pl.scan_parquet(str(work / "data" / "minute" / "**" / "*.parquet"), hive_partitioning=False)
    with sqlite3.connect(work / "ledger.db") as db:
        recorded = db.execute("SELECT sum(rows) FROM units").fetchone()[0]
    assert folder.collect().height > recorded  # the premise: the folder read counts January twice

    audit = run_cli("audit", "--deep", "--json")
    findings = json.loads(audit.out)["deep"]["findings"]
    extra = sorted(f["path"] for f in findings if f["kind"] == "extra_file")
    assert audit.code == 1 and extra == sorted(p.relative_to(work / "data").as_posix() for p in copies), (
        f"audit --deep exit {audit.code}, findings {findings}"
    )
    assert len(findings) == len(copies)
    repaired = run_cli("repair")
    assert "0 units queued again, 0 files quarantined" in repaired.out and "part (1).parquet" in repaired.out
    assert all(copy.exists() for copy in copies)  # reported, never moved or deleted
    assert run_cli("audit", "--deep").code == 1


def test_repair_refuses_while_a_run_holds_units(work):
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    with Ledger(work / "ledger.db") as ledger:
        ledger.claim("someone-else", 60)
    result = run_cli("repair")
    assert result.code == 2 and "a run holds 1 unit right now" in result.err


def test_ledger_from_a_newer_polyledger_is_refused_by_every_command(work):
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    with sqlite3.connect(work / "ledger.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0999'")
    for args in (["status"], ["audit"], ["run"], ["plan", "--universe", "u.csv", "--from", "2023-01-01"]):
        result = run_cli(*args)
        assert result.code == 2 and "newer than this polyledger knows" in result.err, args


@pytest.mark.skipif(os.name == "nt", reason="POSIX only: Windows cannot send SIGINT to a child process")
def test_ctrl_c_stops_gracefully_and_nothing_stays_running(work, market):
    write_universe(work / "u.csv", ["AAPL", "SIRI", "PLUG", "MID1"])
    run_cli("plan", "--universe", "u.csv", "--from", "2022-01-01", "--to", "2023-12-31")
    workers = 4
    with GatedServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        server.allow(40)
        command = cli_command("run", "--base-url", server.url, "--workers", workers)
        process = subprocess.Popen(
            command,
            cwd=work,
            env=dict(python_env(), POLYGON_API_KEY=API_KEY, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert wait_for(server.held, timeout=120)  # mid-work: its next answers are held back
        process.send_signal(signal.SIGINT)
        # the run says it is stopping once it has set its stop flag; from then on no
        # worker may send a new request, so the server gets at most the requests already
        # sent (one per worker, those at the gate included)
        assert read_until(process.stdout, b"stopping: finishing units in flight")
        arrived, waiting = server.counts()
        server.allow(10_000)
        out, err = process.communicate(timeout=120)
        assert server.arrived - arrived <= workers - waiting, (server.arrived, arrived, waiting)
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err
    counts = ledger_states(work / "ledger.db")
    assert counts.get("running", 0) == 0 and counts.get("pending", 0) > 0
    assert not [p for p in (work / "data").rglob("*") if p.name.startswith(".tmp-")]


def test_chaos_kill_9_five_times_then_finish(work, market):
    tickers = ["AAPL", "BRK.B", "SIRI", "PLUG", "MID1", "MID2", "NEWCO", "TINY"]
    start, end = D(2022, 7, 1), D(2023, 12, 31)
    write_universe(work / "u.csv", tickers)
    run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end)
    chance = random.Random(20261123)
    env = dict(python_env(), POLYGON_API_KEY=API_KEY)
    with GatedServer(market, api_keys=(API_KEY,), page_cap=3_000) as server:
        command = cli_command(
            "run", "--base-url", server.url, "--workers", "6", "--rate", "1000", "--lease-seconds", "1"
        )
        kills = 0
        for _ in range(5):
            # the crash instant, counted in answers: after them the victim's requests wait at
            # the gate, so it is always mid-work (it cannot finish first) when it is killed,
            # while its other workers may be writing files or settling units
            server.allow(chance.randint(3, 30))
            victim = subprocess.Popen(
                command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            assert wait_for(server.held, timeout=120)
            if victim.poll() is None:
                victim.kill()
                kills += 1
            victim.wait(timeout=30)
            server.release_waiting()  # the dead victim's requests: answered into closed sockets
        assert kills == 5
        server.allow(1_000_000)
        left = ledger_states(work / "ledger.db")
        assert left.get("pending", 0) + left.get("running", 0) > 0, "the chaos left nothing to finish"
        final = run_cli(
            "run", "--base-url", server.url, "--workers", "6", "--rate", "1000", "--lease-seconds", "1"
        )
        assert final.code == 0, final.out + final.err
    assert set(ledger_states(work / "ledger.db")) <= {"done", "empty_confirmed"}
    assert_frame_equal(read_dataset(work / "data", "minute"), expected(market, tickers, start, end))
    deep = run_cli("audit", "--deep")
    assert deep.code == 0, deep.out


def test_a_wrong_base_url_path_stops_the_run_instead_of_failing_every_unit(work, market):
    write_universe(work / "u.csv", ["SIRI", "TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        result = run_cli("run", "--base-url", server.url + "/typo")
    assert result.code == 1 and "check --base-url" in result.out + result.err
    assert ledger_states(work / "ledger.db") == {"pending": 24}


def test_plan_while_a_run_is_writing(work, market):
    write_universe(work / "u.csv", ["AAPL", "SIRI", "PLUG"])
    run_cli("plan", "--universe", "u.csv", "--from", "2022-01-01", "--to", "2023-12-31")
    with StandInServer(market, api_keys=(API_KEY,), latency=0.05) as server:
        command = cli_command("run", "--base-url", server.url, "--workers", "8")
        process = subprocess.Popen(
            command,
            cwd=work,
            env=dict(python_env(), POLYGON_API_KEY=API_KEY),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for(lambda: ledger_states(work / "ledger.db").get("done", 0) >= 2, timeout=60)
            for first in ("2021-01-01", "2020-01-01", "2019-01-01"):
                result = run_cli("plan", "--universe", "u.csv", "--from", first, "--to", "2023-12-31")
                assert result.code == 0, result.err
        finally:
            process.wait(timeout=120)
    assert process.returncode == 0, process.stderr.read().decode()


def test_one_ledger_never_mixes_adjusted_and_raw_bars(tmp_path):
    with Ledger(tmp_path / "ledger.db") as first, Ledger(tmp_path / "ledger.db") as second:
        assert first.claim_setting("adjusted", "false") == "false"
        assert second.claim_setting("adjusted", "true") == "false"  # the first choice stands


def test_bars_outside_the_asked_dates_are_counted():
    from polyledger.bars import bars_outside

    raw = pl.DataFrame({"t": [1112331600000, 1112587200000]})  # 2005-04-01 and 2005-04-04, 00:00 ET
    assert bars_outside(raw, D(2005, 4, 1), D(2005, 4, 4)) == 0
    assert bars_outside(raw, D(2005, 4, 2), D(2005, 4, 4)) == 1
    assert bars_outside(raw, D(2005, 4, 2), D(2005, 4, 3)) == 2


def test_repair_refuses_when_every_file_is_missing_a_wrong_data_folder(work, market):
    write_universe(work / "u.csv", ["TINY", "MID3"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-02-28")
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
    (work / "elsewhere").mkdir()
    refused = run_cli("repair", "--data", "elsewhere")
    assert (
        refused.code == 2
        and "every one of the 4 files the ledger lists is missing from elsewhere" in refused.err
    )
    assert ledger_states(work / "ledger.db") == {"done": 4}  # nothing queued again
    assert run_cli("audit", "--jump", "0.3").code == 2  # a --quality option without --quality
    assert run_cli("audit", "--quality", "--data", "nowhere").code == 2
    assert run_cli("repair", "--data", "elsewhere", "--yes").code == 0
    assert ledger_states(work / "ledger.db") == {"pending": 4}

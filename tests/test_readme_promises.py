"""Promises of the README and docs/ that no other test pinned down: the stored files' layout, schema,
compression and checksum; what a range of units costs in requests and how it is charged;
the key travelling in a header, never in a URL. Each test names, in tests/README.md, the
deliberate break in the production code that makes it fail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    FILE_COLUMNS,
    STORED_COLUMNS,
    cli_command,
    python_env,
    run_cli,
    truth,
    write_universe,
)

import polyledger
from polyledger.checks.audit import audit
from polyledger.download import UnsettledUnitsWarning
from polyledger.ledger import AttemptRecord, Ledger, StoredFile, UnitState
from polyledger.plan import plan
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.keyshare import KeyShare, LedgerBoard, key_id, starting_rate
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.testing import StandInServer, SyntheticMarket

D = dt.date
# docs/data.md: data/minute/ticker=AAPL/year=2024/month=03/part.parquet, data/day/ticker=AAPL/year=2024/part.parquet
LAYOUT = {
    "minute": re.compile(
        r"minute/ticker=(?P<ticker>[A-Z.\-]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/part\.parquet"
    ),
    "day": re.compile(r"day/ticker=(?P<ticker>[A-Z.\-]+)/year=(?P<year>\d{4})/part\.parquet"),
}
# docs/data.md: the stored columns and the types it names (UTC ms timestamps, float64 volume)
DOCUMENTED_TYPES = {"timestamp": pl.Datetime("ms", "UTC"), "volume": pl.Float64}


def _done_units(ledger: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(ledger) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(
            "SELECT dataset, ticker, period_start, rows, file_path, checksum, bytes, requests FROM units "
            "WHERE state = 'done' ORDER BY dataset, ticker, period_start"
        ).fetchall()


def _plan_and_run(work: Path, server_url: str, tickers: list[str], *plans: tuple[str, str, str]) -> None:
    write_universe(work / "universe.csv", tickers)
    for dataset, start, end in plans:
        planned = run_cli(
            "plan", "--universe", "universe.csv", "--dataset", dataset, "--from", start, "--to", end
        )
        assert planned.code == 0, planned.err
    ran = run_cli("run", "--base-url", server_url, "--workers", "2", "--rate", "5000")
    assert ran.code == 0, ran.err


def _compressions(path: Path) -> set[str]:
    metadata = pq.read_metadata(path)
    return {
        metadata.row_group(group).column(column).compression
        for group in range(metadata.num_row_groups)
        for column in range(metadata.num_columns)
    }


def test_each_unit_file_has_the_documented_path_columns_compression_and_checksum(work, server, market):
    """docs/data.md: hive paths, zstd, the listed columns and types, each timestamp
    once and sorted, bars in the unit of their US/Eastern session date; "The ledger": the
    unit's rows, bytes and sha256 checksum are those of its file."""
    _plan_and_run(
        work,
        server.url,
        ["AAPL", "TINY"],
        ("minute", "2023-02-01", "2023-03-31"),
        ("day", "2022-01-01", "2023-12-31"),
    )
    units = _done_units(work / "ledger.db")
    assert {(u["dataset"], u["ticker"]) for u in units} == {
        ("minute", "AAPL"),
        ("minute", "TINY"),
        ("day", "AAPL"),
        ("day", "TINY"),
    }
    for unit in units:
        match = LAYOUT[unit["dataset"]].fullmatch(unit["file_path"])
        assert match, unit["file_path"]
        start = D.fromisoformat(unit["period_start"])
        assert (match["ticker"], int(match["year"])) == (unit["ticker"], start.year)
        if unit["dataset"] == "minute":
            assert int(match["month"]) == start.month
        path = work / "data" / unit["file_path"]
        payload = path.read_bytes()
        assert unit["checksum"] == "sha256:" + hashlib.sha256(payload).hexdigest()
        assert unit["bytes"] == len(payload)
        assert _compressions(path) == {"ZSTD"}
        bars = pl.read_parquet(path)
        assert bars.columns == FILE_COLUMNS
        assert {name: bars.schema[name] for name in DOCUMENTED_TYPES} == DOCUMENTED_TYPES
        assert bars.height == unit["rows"]
        times = bars.get_column("timestamp")
        assert times.is_unique().all() and times.is_sorted()
        # exactly the bars of the unit's US/Eastern session dates (a run is adjusted by default)
        period_end = D(start.year, 12, 31) if unit["dataset"] == "day" else _month_end(start)
        expected = truth(market, unit["dataset"], unit["ticker"], start, period_end, adjusted=True)
        assert_frame_equal(bars.select(STORED_COLUMNS), expected)
        # a bare-ticker universe: each symbol is one security, polyledger's derived id
        assert set(bars.get_column("security_id")) == {f"PL:{unit['ticker']}"}


def _month_end(start: dt.date) -> dt.date:
    following = D(start.year + start.month // 12, start.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


# --- requests: a range is asked once, and each unit is charged its share -------------------

PAGE_CAP = 15_000  # about three quarters of a dense month: month by month would cost 2 a month


@pytest.fixture
def capped_server(market: SyntheticMarket) -> Iterator[StandInServer]:
    with StandInServer(market, api_keys=(API_KEY,), page_cap=PAGE_CAP) as running:
        yield running


def test_a_range_costs_ceil_bars_over_the_page_size_and_each_unit_is_charged_its_share(
    work, market, capped_server
):
    """docs/operations.md "How it fetches": a worker asks for a ticker's consecutive units at once, so
    the range costs ceil(bars / page size) requests, never more than asking month by
    month; each settled unit is charged the requests made since the previous one, so the
    units' requests add up to what the server answered."""
    start, end = D(2023, 1, 1), D(2023, 6, 30)
    write_universe(work / "universe.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end).code == 0
    ran = run_cli("run", "--base-url", capped_server.url, "--workers", "1", "--rate", "5000")
    assert ran.code == 0, ran.err
    bars = truth(market, "minute", "AAPL", start, end).height
    month_by_month = sum(
        math.ceil(truth(market, "minute", "AAPL", D(2023, m, 1), _month_end(D(2023, m, 1))).height / PAGE_CAP)
        for m in range(1, 7)
    )
    sent = capped_server.stats.bars_requests
    assert sent == math.ceil(bars / PAGE_CAP) < month_by_month  # the comparison is the point: grouping pays
    units = _done_units(work / "ledger.db")
    assert len(units) == 6 and sum(u["rows"] for u in units) == bars
    assert sum(u["requests"] for u in units) == sent
    with sqlite3.connect(work / "ledger.db") as connection:
        (charged,) = connection.execute("SELECT sum(requests) FROM unit_attempts").fetchone()
    assert charged == sent


# --- the key travels in a header ----------------------------------------------------------

EMPTY_PAGE = (
    b'{"ticker":"AAPL","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"r1"}'
)


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with an empty aggregates page and records what it was sent."""

    seen: list[tuple[str, str]]

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.server.seen.append((self.path, self.headers.get("Authorization", "")))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(EMPTY_PAGE)))
        self.end_headers()
        self.wfile.write(EMPTY_PAGE)

    def log_message(self, *_args: object) -> None:  # quiet: the test reads `seen` instead
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_key_travels_in_an_authorization_header_never_in_the_url(recorder):
    """docs/operations.md "How it fetches": the key travels in an `Authorization` header, never in a URL
    (URLs end up in logs, proxies and the ledger's run records)."""
    base = f"http://127.0.0.1:{recorder.server_address[1]}"
    client = PolygonClient(API_KEY, base_url=base, limiter=RateLimiter(1000.0))
    try:
        client.get(f"{base}/v2/aggs/ticker/AAPL/range/1/minute/2023-01-01/2023-01-31", {"limit": "50000"})
    finally:
        client.close()
    ((target, authorization),) = recorder.seen
    assert API_KEY not in target and "apikey" not in target.lower()
    assert authorization == f"Bearer {API_KEY}"


# --- a Windows console -------------------------------------------------------------------


def test_text_a_cp1252_console_cannot_encode_is_replaced_not_a_crash(work):
    """README: Linux, macOS or Windows. A cp1252 console cannot encode most of Unicode (a
    company's name, an error text from the API): printing it must not crash the command."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31").code == 0
    env = dict(python_env(), PYTHONIOENCODING="cp1252")
    for output in ("table", "csv", "json"):
        shown = subprocess.run(
            cli_command(
                "sql", "--format", output, "SELECT '\u6f22\u5b57 \u2192 \u2713' AS name, ticker FROM units"
            ),
            cwd=work,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr.decode("cp1252", errors="replace")
        assert b"Traceback" not in shown.stderr
        assert "TINY" in shown.stdout.decode("cp1252")  # the rest of the row still arrives
        if output == "csv":  # data sent to a file or a pipe is UTF-8: no name turned into `?`
            assert shown.stdout.decode("utf-8").splitlines()[1] == "\u6f22\u5b57 \u2192 \u2713,TINY"


# --- the queue and the attempt history ------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def _requeue_once(ledger: Ledger, ticker: str) -> None:
    (unit,) = ledger.claim("w", 60, limit=1)
    assert unit.ticker == ticker
    ledger.requeue(unit, AttemptRecord(requests=1, error_class="http_503", error="server error 503"))


def test_a_unit_that_failed_transiently_goes_back_behind_the_others(ledger):
    """docs/operations.md "When things go wrong": a unit that still fails goes back to the queue behind
    the others (so one bad unit cannot hold a worker while the rest wait)."""
    plan(ledger, ["AAA", "BBB", "CCC"], "minute", D(2024, 1, 1), D(2024, 1, 31))
    _requeue_once(ledger, "AAA")  # AAA has the lowest id, and one attempt behind it now
    order = [unit.ticker for _ in range(3) for unit in ledger.claim("w", 60, limit=1)]
    assert order == ["BBB", "CCC", "AAA"]


def test_a_widened_unit_is_queued_again_with_a_fresh_attempt_budget(ledger):
    """docs/commands.md `plan`: a unit an earlier plan clipped is widened and fetched whole; like
    `retry`, with a fresh budget, so a unit that had used its attempts does not fail for
    good on its first transient error."""
    plan(ledger, ["AAA"], "minute", D(2024, 1, 10), D(2024, 1, 31))
    for _ in range(2):
        _requeue_once(ledger, "AAA")
    (unit,) = ledger.claim("w", 60, limit=1)
    ledger.settle_failed(unit, AttemptRecord(requests=1, error_class="http_503", error="server error 503"))
    assert plan(ledger, ["AAA"], "minute", D(2024, 1, 1), D(2024, 1, 31)).widened == 1
    (row,) = ledger.query("SELECT state, period_start, attempts FROM units")
    assert (row.state, row.period_start, row.attempts) == ("pending", "2024-01-01", 0)


def test_every_attempt_is_a_row_with_its_outcome_class_status_request_id_and_cost(work, market):
    """docs/operations.md "When things go wrong": every attempt is a row in `unit_attempts` (outcome,
    error class, HTTP status, request id, requests, bytes, bars)."""
    with StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 3, 1)) as server:
        write_universe(work / "universe.csv", ["SIRI"])
        assert (
            run_cli("plan", "--universe", "universe.csv", "--from", "2023-02-01", "--to", "2023-03-31").code
            == 0
        )
        assert run_cli("run", "--base-url", server.url, "--workers", "1").code == 1  # February: not entitled
    with sqlite3.connect(work / "ledger.db") as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT u.period, u.rows, a.outcome, a.error_class, a.http_status, a.request_id, a.requests, "
            "a.bytes, a.bars FROM unit_attempts a JOIN units u ON u.id = a.unit_id ORDER BY u.period, a.id"
        ).fetchall()
    failed = [r for r in rows if r["period"] == "2023-02"]
    done = [r for r in rows if r["period"] == "2023-03"]
    assert [(r["outcome"], r["error_class"], r["http_status"]) for r in failed[-1:]] == [
        ("failed", "not_entitled", 403)
    ]
    (march,) = done
    assert march["outcome"] == "done" and march["error_class"] is None
    assert march["request_id"] and march["requests"] >= 1 and march["bytes"] > 0
    assert march["bars"] == march["rows"] > 0


# --- stale adjusted units, and what a notebook reads ----------------------------------------


def _fetched_on(day: dt.date):  # type: ignore[no-untyped-def]
    """A ledger clock: fetched_at is recorded from it."""
    return lambda: dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)


def test_adjusted_units_fetched_before_a_later_split_make_audit_exit_1_until_retry_stale(work):
    """docs/ledger.md "Adjusted or raw bars": audit flags the adjusted units fetched before a split
    that took effect later for their ticker (audit exits 1); `retry --stale` queues exactly
    those again (then only work is left: exit 3)."""
    with Ledger(work / "ledger.db", clock=_fetched_on(D(2024, 4, 2))) as ledger:
        plan(ledger, ["SPLT", "PLAIN"], "minute", D(2024, 1, 1), D(2024, 2, 29))
        for unit in ledger.claim("w", 60, limit=4):
            stored = StoredFile(
                path=f"{unit.ticker}-{unit.period_start}", rows=1, checksum="sha256:0", bytes=1
            )
            ledger.settle_done(unit, stored, True, AttemptRecord(requests=1, bars=1))
        ledger.replace_splits("SPLT", [("2024-06-10", 1.0, 4.0)])
    with Ledger(work / "ledger.db", clock=_fetched_on(D(2024, 6, 11))) as ledger:  # once it took effect
        assert audit(ledger).exit_code == 1
    assert run_cli("audit").code == 1
    assert json.loads(run_cli("audit", "--json").out)["exit_code"] == 1
    assert run_cli("retry", "--stale").code == 0
    with Ledger(work / "ledger.db") as ledger:
        pending = ledger.query("SELECT ticker FROM units WHERE state = 'pending' ORDER BY period")
        assert [row.ticker for row in pending] == ["SPLT", "SPLT"]
    assert run_cli("audit").code == 3


def test_a_notebook_reads_only_the_bars_of_units_the_ledger_says_are_done(work, server, market):
    """docs/data.md: from a notebook, read only what the ledger says is done. A unit
    queued again (retry, repair, a wider plan) keeps its old file on disk until it is
    fetched; its bars are not served, and the selection warns that it holds no bars yet."""
    _plan_and_run(work, server.url, ["TINY"], ("minute", "2023-02-01", "2023-03-31"))
    with Ledger(work / "ledger.db") as ledger:
        requeued = ledger.reset_units("period = :p", {"p": "2023-02"}, {UnitState.DONE})
    assert requeued == 1 and list((work / "data" / "minute").rglob("month=02/part.parquet"))
    notebook = polyledger.open(work / "ledger.db", work / "data")
    with pytest.warns(UnsettledUnitsWarning, match="1 pending"):
        bars = notebook.bars("minute", tickers=["TINY"]).collect()
    march = truth(market, "minute", "TINY", D(2023, 3, 1), D(2023, 3, 31), adjusted=True)
    assert_frame_equal(bars.select(STORED_COLUMNS).sort("timestamp"), march)


# --- retry --flagged --check, and names without a market cap ------------------------------


def _quality_flag(ticker: str, unit_id: int, check: str, dataset: str = "minute") -> dict:
    """A finding as `audit --quality` stores it in quality_flags."""
    return {
        "dataset": dataset,
        "ticker": ticker,
        "session_date": "2024-01-02",
        "check_name": check,
        "detail": "seeded by the test",
        "value": None,
        "unit_id": unit_id,
    }


def test_retry_flagged_queues_only_the_units_of_the_checks_asked_for(work):
    """docs/commands.md `retry --flagged [--check NAME]`: queues again the done units that
    `audit --quality` flagged, only those of the named check when one is given."""
    with Ledger(work / "ledger.db") as ledger:
        plan(ledger, ["AAA", "BBB", "CCC"], "minute", D(2024, 1, 1), D(2024, 1, 31))
        ids = {}
        for unit in ledger.claim("w", 60, limit=3):
            stored = StoredFile(path=f"{unit.ticker}.parquet", rows=1, checksum="sha256:0", bytes=1)
            ledger.settle_done(unit, stored, True, AttemptRecord(requests=1, bars=1))
            ids[unit.ticker] = unit.id
        flags = [
            _quality_flag("AAA", ids["AAA"], "missing_session"),
            _quality_flag("BBB", ids["BBB"], "ohlc_violation"),
        ]
        ledger.replace_quality_flags(["minute"], flags)

    def pending() -> list[str]:
        with Ledger(work / "ledger.db") as ledger:
            return [
                r.ticker
                for r in ledger.query("SELECT ticker FROM units WHERE state = 'pending' ORDER BY ticker")
            ]

    assert run_cli("retry", "--flagged", "--check", "missing_session").code == 0
    assert pending() == ["AAA"]
    typo = run_cli("retry", "--flagged", "--check", "missing_sessions")
    assert typo.code == 2 and len(typo.err.strip().splitlines()) == 1
    assert "unknown quality check 'missing_sessions'" in typo.err and "missing_session," in typo.err
    assert pending() == ["AAA"]  # nothing changed
    assert run_cli("retry", "--flagged").code == 0
    assert pending() == ["AAA", "BBB"]  # CCC was never flagged: still done


def test_retry_flagged_is_narrowed_by_dataset_and_refuses_class(work):
    """docs/commands.md `retry --flagged [--dataset D]`: only the flagged units of that
    dataset go back to pending (those of other datasets stay done, never downloaded again);
    `--class`, which chooses failed units, is refused with --flagged (one line, exit 2)."""
    with Ledger(work / "ledger.db") as ledger:
        plan(ledger, ["AAA"], "minute", D(2024, 1, 1), D(2024, 1, 31))
        plan(ledger, ["AAA"], "day", D(2024, 1, 1), D(2024, 12, 31))
        flags: dict[str, list[dict]] = {}
        for unit in ledger.claim("w", 60, limit=2):
            stored = StoredFile(path=f"{unit.dataset}.parquet", rows=1, checksum="sha256:0", bytes=1)
            ledger.settle_done(unit, stored, True, AttemptRecord(requests=1, bars=1))
            flags[unit.dataset] = [_quality_flag("AAA", unit.id, "ohlc_violation", unit.dataset)]
        for dataset, found in flags.items():
            ledger.replace_quality_flags([dataset], found)

    def pending() -> list[str]:
        with Ledger(work / "ledger.db") as ledger:
            return [r.dataset for r in ledger.query("SELECT dataset FROM units WHERE state = 'pending'")]

    refused = run_cli("retry", "--flagged", "--class", "all")
    assert refused.code == 2 and "--class" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert pending() == []
    assert run_cli("retry", "--flagged", "--dataset", "bogus").code == 2
    narrowed = run_cli("retry", "--flagged", "--dataset", "day")
    assert narrowed.code == 0 and narrowed.out.startswith("1 flagged units are pending again")
    assert pending() == ["day"]  # the flagged minute unit is still done


def test_a_name_without_a_known_market_cap_is_kept_under_cap_max(work, market):
    """docs/commands.md `universe`: names with no known cap (often delisted ones) are kept under
    `--cap-max`: dropping them would bring survivorship bias back."""
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        base = ["universe", "--out", "u.csv", "--base-url", server.url, "--date", "2023-12-29"]
        assert run_cli(*base).code == 0
        # the details a rebuild on the same day reuses: GONE's, as if the API knew no cap for it
        (gone,) = (work / "data" / "details").rglob("ticker=GONE/part.parquet")
        details = pl.read_parquet(gone)
        details.with_columns(
            pl.lit(None, dtype=details.schema["market_cap"]).alias("market_cap")
        ).write_parquet(gone)
        capped = run_cli(*base, "--cap-max", "1")  # every known cap is above one dollar
    assert capped.code == 0, capped.err
    kept = pl.read_csv(work / "u.csv")
    assert kept.get_column("ticker").to_list() == ["GONE"] and kept.get_column("market_cap").null_count() == 1


# --- rate control ----------------------------------------------------------------------------


class _Clock:
    """A virtual clock the limiter reads; the test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _throttled_after(limiter: RateLimiter, clock: _Clock, moments: list[float], at: float) -> float:
    """Successes at `moments`, then one 429 (no Retry-After) at `at`; the rate before it."""
    for moment in moments:
        clock.now = moment
        limiter.on_success()
    before = limiter.rate
    clock.now = at
    limiter.on_throttled(None)
    return before


def test_a_429_drops_to_90_percent_of_what_the_key_accepted_at_most_40_percent_at_once():
    """docs/operations.md "How it fetches": on a 429 (at most one decision a second) the rate
    drops to 90% of what the key accepted over the last 3 s or 8 requests, at most 40% at
    once; a first 429 with nothing measured, or too few successes to measure, halves it."""
    # a key learned at 12/s; 20/s accepted for 3 s, then 10/s: the last 3 s count, 30 in 2.95 s
    clock = _Clock()
    limiter = RateLimiter(100, start=12, clock=clock)
    moments = [i / 20 for i in range(1, 60)] + [3.05 + i / 10 for i in range(30)]
    _throttled_after(limiter, clock, moments, at=6.0)
    assert limiter.rate == pytest.approx(0.9 * 30 / 2.95)
    dropped = limiter.rate
    clock.now = 6.9  # another 429 within the second: the same decision
    limiter.on_throttled(None)
    assert limiter.rate == dropped
    # at 1/s, 3 s hold 3 requests: the last 8 requests' time counts, 7 in 7.5 s
    clock = _Clock()
    slow = RateLimiter(100, start=1, clock=clock)
    _throttled_after(slow, clock, [float(i) for i in range(7)], at=7.5)
    assert slow.rate == pytest.approx(0.9 * 7 / 7.5)
    # accepted half the rate: 40% off at once, no more
    clock = _Clock()
    limiter = RateLimiter(100, start=20, clock=clock)
    before = _throttled_after(limiter, clock, [i / 10 for i in range(1, 31)], at=3.0)
    assert 0.9 * 30 / 2.9 < 0.6 * before and limiter.rate == pytest.approx(0.6 * before)
    # a first 429, nothing measured: 30 successes are mostly the server's initial burst
    clock = _Clock()
    limiter = RateLimiter(100, clock=clock)
    _throttled_after(limiter, clock, [i / 10 for i in range(1, 31)], at=3.0)
    assert limiter.rate == pytest.approx(50.0)
    # too few successes to measure: 2 in the last second
    clock = _Clock()
    limiter = RateLimiter(100, start=4, clock=clock)
    before = _throttled_after(limiter, clock, [2.5, 2.75], at=3.0)
    assert limiter.rate == pytest.approx(0.5 * before)


def test_under_80_percent_of_the_last_measure_the_rate_climbs_5_percent_a_request_then_0_1():
    """docs/operations.md "How it fetches": below 80% of the last measure it climbs back 5% a
    request, above that 0.1% a request, never above --rate (each process) x processes on
    the key."""
    clock = _Clock()
    limiter = RateLimiter(100, start=4, clock=clock)  # the last measure: 4/s
    _throttled_after(limiter, clock, [2.5, 2.75], at=3.0)  # halved: under 3.2/s
    rate = limiter.rate
    while rate < 0.8 * 4:
        limiter.on_success()
        assert limiter.rate == pytest.approx(rate * 1.05)
        rate = limiter.rate
    limiter.on_success()
    assert limiter.rate == pytest.approx(rate * 1.001)
    capped = RateLimiter(5, start=5, clock=clock)  # --rate 5, alone on the key
    for _ in range(1000):
        capped.on_success()
    assert capped.rate == 5.0
    capped.lead(2)  # two processes on the key
    for _ in range(1000):
        capped.on_success()
    capped.lead(2)  # the next sync takes the climb
    assert capped.rate == 10.0


def test_processes_on_a_key_share_one_grid_from_95_percent_of_the_limit_the_ledger_learned(ledger):
    """docs/operations.md "How it fetches" and "Rate budget: many processes on one key": a run
    starts at 95% of the limit the ledger learned for its key; processes on one key share one
    grid of slots (the first to join leads), and a 429 drops the key's rate to 90% of what
    the key accepted, all processes on it counted."""
    clock = _Clock(1_000.0)
    board = LedgerBoard(ledger, key_id(API_KEY, "http://127.0.0.1:9"), wall=clock, monotonic=clock)
    board.publish("earlier", 16.0, 0.0, 16.0)  # an earlier run measured the key: 16/s
    board.leave("earlier")
    first = KeyShare(board, "first", RateLimiter(100, start=starting_rate(board), clock=clock))
    assert first.limiter.rate == pytest.approx(0.95 * 16.0)
    first.sync()
    clock.now += 0.1
    second = KeyShare(board, "second", RateLimiter(100, clock=clock))  # someone leads: follows
    second.sync()
    clock.now = 1_001.0
    first.sync()
    second.sync()
    a, b = first.limiter, second.limiter
    assert (a.leading, a.index, b.leading, b.index) == (True, 0, False, 1)
    assert (b.rate, b.anchor, b.members) == (a.rate, a.anchor, a.members) == (a.rate, a.anchor, 2)
    own = sorted(clock.now + a.reserve() for _ in range(3))
    others = sorted(clock.now + b.reserve() for _ in range(3))
    assert sorted(own + others) == pytest.approx([a.anchor + k / a.rate for k in range(6)])  # turn about
    for second_ in range(2, 5):  # 7 and 4 accepted a second, then a sync (the follower first)
        for k in range(1, 8):
            clock.now = 1_000 + second_ - 1 + k / 7
            a.on_success()
            if k <= 4:
                b.on_success()
        clock.now = 1_000.0 + second_
        second.sync()
        first.sync()
    before = a.rate
    a.on_throttled(None)
    assert (a.known, a.rate) == (pytest.approx(7 + 4), pytest.approx(0.9 * min(11, before)))
    clock.now += 1.0
    first.sync()  # publishes the new rate...
    second.sync()  # ...which the follower takes
    assert b.rate == a.rate


# --- who decides adjusted or raw -------------------------------------------------------------


def test_a_splits_only_run_does_not_decide_adjusted_or_raw_even_with_bar_units_planned(work, server):
    """docs/ledger.md: the first run decides adjusted or raw, a run fetching only splits
    (or details) does not, even when bar units already wait in the ledger: `run --dataset
    splits` then `run --unadjusted` is the recommended path (docs/ledger.md)."""
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31").code == 0
    assert run_cli("plan", "--universe", "u.csv", "--dataset", "splits").code == 0
    splits_only = run_cli("run", "--base-url", server.url, "--dataset", "splits")
    assert splits_only.code == 0, splits_only.err
    raw = run_cli("run", "--base-url", server.url, "--unadjusted")
    assert raw.code == 0, raw.err
    with Ledger(work / "ledger.db") as ledger:
        adjusted = {
            row.adjusted for row in ledger.query("SELECT adjusted FROM units WHERE dataset = 'minute'")
        }
    assert adjusted == {False}

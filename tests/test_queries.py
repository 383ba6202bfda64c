"""Every query in docs/queries.md runs through `polyledger sql` on a real ledger (the demo's,
given retries, never-attempted units, duplicates, a stale unit and quality flags) and gives
exactly what its description means, computed here in Python from the tables' rows; the
figures also agree with the audit and with what the demo is known to hold."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from support import DEMO_BEFORE_HISTORY, run_cli

from polyledger.checks.audit import audit
from polyledger.ledger import AttemptRecord, ClaimedUnit, Ledger, PlannedUnit, StoredFile, UnitState

DOC = Path(__file__).resolve().parent.parent / "docs" / "queries.md"
BLOCK = re.compile(r"```sql\n-- name: (\w+)\n(.*?)```", re.S)


def documented() -> dict[str, str]:
    return {name: body.strip() for name, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))}


def run_query(folder: Path, sql: str) -> list[dict]:
    # `--` ends the options: a query may start with a `-- comment` line, as these do
    result = run_cli("sql", "--format", "json", "--ledger", folder / "ledger.db", "--", sql)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_the_document_has_its_queries():
    assert len(documented()) == 14 == DOC.read_text(encoding="utf-8").count("```sql")


# -- every documented query against the ledger's contents, computed here in Python -----
#
# The demo's ledger has no retried unit, no never-attempted one, no duplicate and no quality
# flag, so a copy of it is given some, through the ledger's own operations, on a clock in the
# past (so one unit is fetched before the demo's AAPL split and is stale): then every query
# has rows to compare with the meaning the document gives it.

HISTORY_UNIT = ("minute", "AAPL", "2023-01")  # the unit `unit_history` asks about
SPLIT_DAY = "2023-08-14"  # the demo's AAPL split


class PastClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2023, 7, 3, 15, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)  # distinct, increasing times
        return self.now


def where_unit(dataset: str, ticker: str, period: str) -> tuple[str, dict]:
    return "dataset = :d AND ticker = :t AND period = :p", {"d": dataset, "t": ticker, "p": period}


def take_only(ledger: Ledger, dataset: str, ticker: str, period: str) -> ClaimedUnit:
    """Claim the one pending unit (nothing else is pending while this runs)."""
    [unit] = ledger.claim("tester", 60, limit=2)
    assert (unit.dataset, unit.ticker) == (dataset, ticker), (unit, period)
    return unit


def make_busy(ledger: Ledger) -> None:
    transient = AttemptRecord(requests=1, error_class="http_500", error="server error 500", http_status=500)
    # AAPL 2023-01 fetched again: a 500, then done with repeated timestamps dropped (before the split)
    where, params = where_unit(*HISTORY_UNIT)
    row = ledger.query(f"SELECT * FROM units WHERE {where}", params)[0]
    assert ledger.reset_units(where, params, {UnitState.DONE}) == 1
    ledger.requeue(take_only(ledger, *HISTORY_UNIT), transient)
    ledger.settle_done(
        take_only(ledger, *HISTORY_UNIT),
        StoredFile(row.file_path, row.rows, row.checksum, row.bytes),
        True,
        AttemptRecord(requests=3, bars=row.rows, duplicates=7, request_id="again"),
    )
    # a failed unit retried, failing twice more in other ways: three attempts, still failed
    failed = ledger.query("SELECT dataset, ticker, period FROM units WHERE state = 'failed' ORDER BY id")[0]
    assert ledger.reset_units(*where_unit(*failed), {UnitState.FAILED}) == 1
    ledger.requeue(take_only(ledger, *failed), transient)
    ledger.requeue(take_only(ledger, *failed), transient)
    ledger.settle_failed(
        take_only(ledger, *failed), AttemptRecord(requests=1, error_class="not_found", error="x")
    )
    # failed units queued again by `retry` (they keep their last error: attempted before)
    ledger.reset_units("state = 'failed' AND dataset = 'day'", {}, {UnitState.FAILED})
    # a newly planned ticker: never attempted
    ledger.add_units(
        [PlannedUnit("minute", "ZNEW", dt.date(2024, m, 1), dt.date(2024, m, 28)) for m in (1, 2)]
    )
    ledger.replace_quality_flags(
        ["minute"],
        [
            {"dataset": "minute", "ticker": t, "check_name": check, "detail": "test", "session_date": day}
            for check, t, day in [
                ("missing_session", "AAPL", "2023-03-01"),
                ("missing_session", "AAPL", "2023-03-02"),
                ("missing_session", "SIRI", "2023-03-01"),
                ("volume_mismatch", "PLUG", "2023-04-03"),
            ]
        ],
    )


@pytest.fixture(scope="module")
def busy_ledger(demo_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("busy")
    shutil.copy(demo_download / "ledger.db", folder / "ledger.db")
    with Ledger(folder / "ledger.db", create=False, clock=PastClock()) as ledger:
        make_busy(ledger)
    return folder


def tables(folder: Path) -> dict[str, list[dict]]:
    """Every row of the tables the queries read, as plain dicts."""
    connection = sqlite3.connect(folder / "ledger.db")
    connection.row_factory = sqlite3.Row
    try:
        return {
            name: [dict(row) for row in connection.execute(f"SELECT * FROM {name} ORDER BY rowid")]
            for name in ("units", "unit_attempts", "runs", "splits", "quality_flags")
        }
    finally:
        connection.close()


SETTLED_STATES = ("done", "empty_confirmed")


def group(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def bars(rows: list[dict]) -> int:
    return sum(r["rows"] or 0 for r in rows)


def count(rows: list[dict], *states: str) -> int:
    return sum(r["state"] in states for r in rows)


def pick(row: dict, *columns: str) -> dict:
    return {c: row[c] for c in columns}


def expect_units_by_state(t: dict) -> list[dict]:
    return [
        {"dataset": d, "state": s, "units": len(rows), "bars": bars(rows)}
        for (d, s), rows in sorted(group(t["units"], "dataset", "state").items())
    ]


def expect_coverage_per_ticker(t: dict) -> list[dict]:
    minute = [u for u in t["units"] if u["dataset"] == "minute"]
    return [
        {
            "ticker": ticker,
            "months": len(rows),
            "settled": count(rows, *SETTLED_STATES),
            "with_bars": count(rows, "done"),
            "failed": count(rows, "failed"),
            "bars": bars(rows),
        }
        for (ticker,), rows in sorted(group(minute, "ticker").items())
    ]


def expect_holes(t: dict) -> list[dict]:
    open_units = [u for u in t["units"] if u["state"] not in SETTLED_STATES]
    open_units.sort(key=lambda u: (u["dataset"], u["ticker"], u["period_start"]))
    return [pick(u, "dataset", "ticker", "period", "state", "error_class") for u in open_units]


def expect_tickers_without_data(t: dict) -> list[dict]:
    minute = [u for u in t["units"] if u["dataset"] == "minute"]
    return [
        {"ticker": ticker, "unsettled": len(rows) - count(rows, *SETTLED_STATES)}
        for (ticker,), rows in sorted(group(minute, "ticker").items())
        if not count(rows, "done")
    ]


def expect_never_attempted(t: dict) -> list[dict]:
    untouched = [
        u
        for u in t["units"]
        if u["attempts"] == 0
        and u["requests"] == 0
        and u["fetched_at"] is None
        and u["last_error"] is None
        and u["error_class"] is None
    ]
    return [{"dataset": d, "units": len(rows)} for (d,), rows in sorted(group(untouched, "dataset").items())]


def expect_failed_by_class(t: dict) -> list[dict]:
    failed = group([u for u in t["units"] if u["state"] == "failed"], "error_class")
    out = [
        {"error_class": c, "units": len(rows), "example": min(f"{u['ticker']} {u['period']}" for u in rows)}
        for (c,), rows in failed.items()
    ]
    return sorted(out, key=lambda r: (-r["units"], r["error_class"]))


def expect_unit_history(t: dict) -> list[dict]:
    dataset, ticker, period = HISTORY_UNIT
    [unit] = [u for u in t["units"] if (u["dataset"], u["ticker"], u["period"]) == (dataset, ticker, period)]
    columns = ("started_at", "outcome", "error_class", "http_status", "requests", "bars", "error")
    return [
        pick(a, *columns)
        for a in sorted(t["unit_attempts"], key=lambda a: a["id"])
        if a["unit_id"] == unit["id"]
    ]


def expect_most_retried(t: dict) -> list[dict]:
    retried = sorted(
        (u for u in t["units"] if u["attempts"] > 1), key=lambda u: (-u["attempts"], u["ticker"], u["period"])
    )
    return [pick(u, "dataset", "ticker", "period", "state", "attempts", "error_class") for u in retried[:20]]


def expect_requests_per_ticker(t: dict) -> list[dict]:
    out = [
        {"dataset": d, "ticker": ticker, "requests": sum(u["requests"] for u in rows), "bars": bars(rows)}
        for (d, ticker), rows in group(t["units"], "dataset", "ticker").items()
    ]
    return sorted(out, key=lambda r: (-r["requests"], r["dataset"], r["ticker"]))


def expect_runs(t: dict) -> list[dict]:
    columns = ("id", "started_at", "ended_at", "outcome", "workers", "rate", "units_settled", "requests")
    return [pick(r, *columns) for r in sorted(t["runs"], key=lambda r: r["started_at"], reverse=True)]


def expect_stale_adjusted(t: dict) -> list[dict]:
    out = []
    for u in t["units"]:
        if u["state"] != "done" or not u["adjusted"] or u["dataset"] not in ("minute", "day"):
            continue
        later = [
            s["execution_date"]
            for s in t["splits"]
            # in force from the open of its execution date (14:30 UTC at the latest); one
            # still to come stales nothing
            if s["ticker"] == u["ticker"]
            and u["period_start"] < s["execution_date"]
            and u["fetched_at"] < s["execution_date"] + "T14:30:00"
            and s["execution_date"] <= dt.datetime.now(dt.timezone.utc).date().isoformat()
        ]
        if later:
            out.append({**pick(u, "dataset", "ticker", "period", "fetched_at"), "split_on": max(later)})
    return sorted(out, key=lambda r: (r["ticker"], r["period"]))


def expect_duplicates_dropped(t: dict) -> list[dict]:
    units = {u["id"]: u for u in t["units"]}
    totals: dict[int, int] = {}
    for a in t["unit_attempts"]:
        if a["duplicates"] > 0:
            totals[a["unit_id"]] = totals.get(a["unit_id"], 0) + a["duplicates"]
    out = [{**pick(units[i], "dataset", "ticker", "period"), "duplicates": n} for i, n in totals.items()]
    return sorted(out, key=lambda r: -r["duplicates"])


def expect_quality_by_check(t: dict) -> list[dict]:
    out = [
        {"check_name": c, "flags": len(rows), "tickers": len({f["ticker"] for f in rows})}
        for (c,), rows in group(t["quality_flags"], "check_name").items()
    ]
    return sorted(out, key=lambda r: -r["flags"])


def expect_splits_known(t: dict) -> list[dict]:
    ordered = sorted(t["splits"], key=lambda s: s["ticker"])
    ordered.sort(key=lambda s: s["execution_date"], reverse=True)  # stable: ticker within a date
    return [pick(s, "ticker", "execution_date", "split_from", "split_to") for s in ordered]


EXPECTED = {name.removeprefix("expect_"): f for name, f in globals().items() if name.startswith("expect_")}


def test_every_documented_query_has_its_meaning_written_here():
    assert set(EXPECTED) == set(documented())


@pytest.mark.parametrize("name", sorted(documented()))
def test_every_documented_query_gives_what_the_ledger_holds(busy_ledger, name):
    expected = EXPECTED[name](tables(busy_ledger))
    assert expected, "the ledger must hold something for this query to find"
    got = run_query(busy_ledger, documented()[name])  # the sql command refuses anything but reads
    assert got == expected
    assert [list(row) for row in got] == [list(row) for row in expected]  # the documented columns, in order


def test_the_busy_ledger_holds_what_was_done_to_it(busy_ledger):
    """The figures the setup above makes, known without the queries or their Python twins."""
    history = run_query(busy_ledger, documented()["unit_history"])
    assert [(a["outcome"], a["error_class"]) for a in history[-2:]] == [
        ("pending", "http_500"),
        ("done", None),
    ]
    assert run_query(busy_ledger, documented()["duplicates_dropped"]) == [
        {"dataset": "minute", "ticker": "AAPL", "period": "2023-01", "duplicates": 7}
    ]
    stale = run_query(busy_ledger, documented()["stale_adjusted"])
    assert [(r["ticker"], r["period"], r["split_on"]) for r in stale] == [("AAPL", "2023-01", SPLIT_DAY)]
    assert {r["dataset"]: r["units"] for r in run_query(busy_ledger, documented()["never_attempted"])} == {
        "minute": 2
    }
    retried = run_query(busy_ledger, documented()["most_retried"])
    assert [(r["attempts"], r["state"]) for r in retried] == [(3, "failed"), (2, "done")]
    assert run_query(busy_ledger, documented()["quality_by_check"]) == [
        {"check_name": "missing_session", "flags": 3, "tickers": 2},
        {"check_name": "volume_mismatch", "flags": 1, "tickers": 1},
    ]


def test_units_by_state_and_failures_agree_with_the_audit(demo_download):
    rows = run_query(demo_download, documented()["units_by_state"])
    with Ledger(demo_download / "ledger.db", create=False) as ledger:
        report = audit(ledger)
        total = ledger.query("SELECT count(*) AS n FROM units")[0].n
    assert sum(row["units"] for row in rows) == total
    for entry in report.datasets:
        assert {r["state"]: r["units"] for r in rows if r["dataset"] == entry.dataset} == {
            state: count for state, count in entry.by_state.items() if count
        }
        assert sum(r["bars"] for r in rows if r["dataset"] == entry.dataset) == entry.rows
    failed = run_query(demo_download, documented()["failed_by_class"])
    expected = Counter()
    for entry in report.datasets:
        expected.update({f.error_class: f.units for f in entry.failures})
    assert (
        {row["error_class"]: row["units"] for row in failed}
        == expected
        == {"not_entitled": 7 * DEMO_BEFORE_HISTORY}
    )  # 6 months and a year each


def test_coverage_holes_and_history_queries_return_what_the_demo_holds(demo_download):
    coverage = {row["ticker"]: row for row in run_query(demo_download, documented()["coverage_per_ticker"])}
    assert coverage["NOSUCH"]["bars"] == 0 and coverage["NOSUCH"]["with_bars"] == 0
    assert coverage["AAPL"]["failed"] == 6  # the demo's plan is entitled from 2023 only
    holes = run_query(demo_download, documented()["holes"])
    assert {row["state"] for row in holes} == {"failed"} and len(
        holes
    ) == 7 * DEMO_BEFORE_HISTORY  # minute + day
    assert [row["ticker"] for row in run_query(demo_download, documented()["tickers_without_data"])] == [
        "NOSUCH"
    ]
    history = run_query(demo_download, documented()["unit_history"])
    assert history and history[-1]["outcome"] == "done" and history[-1]["bars"] > 0
    splits = run_query(demo_download, documented()["splits_known"])
    assert [(row["ticker"], row["split_to"]) for row in splits] == [("AAPL", 4.0)]
    assert run_query(demo_download, documented()["stale_adjusted"]) == []  # fetched after the split


def test_audit_reports_years_and_an_exit_code_for_schedulers(demo_download):
    result = run_cli("audit", "--json", "--ledger", demo_download / "ledger.db")
    report = json.loads(result.out)
    assert result.code == 1 and report["exit_code"] == 1  # failed units: needs a person (or retry)
    minute = next(d for d in report["datasets"] if d["dataset"] == "minute")
    assert [y["year"] for y in minute["by_year"]] == ["2022", "2023", "2024"]
    failed_minutes = 6 * DEMO_BEFORE_HISTORY
    assert minute["by_year"][0]["failed"] == failed_minutes
    assert sum(y["failed"] for y in minute["by_year"]) == failed_minutes
    assert sum(y["units"] for y in minute["by_year"]) == minute["units"]
    assert minute["tickers_without_data"] == ["NOSUCH"]  # confirmed empty, some months failed

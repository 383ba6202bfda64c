"""Every query in docs/queries.md runs on a real ledger (the demo's) through `polyledger sql`,
and the ones with a figure to check agree with the ledger computed another way."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from support import run_cli

from polyledger.audit import audit
from polyledger.ledger import Ledger

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


@pytest.mark.parametrize("name", sorted(documented()))
def test_every_documented_query_runs_read_only(demo_download, name):
    run_query(demo_download, documented()[name])  # the sql command refuses anything but reads


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
    assert {row["error_class"]: row["units"] for row in failed} == expected == {"not_entitled": 32}


def test_coverage_holes_and_history_queries_return_what_the_demo_holds(demo_download):
    coverage = {row["ticker"]: row for row in run_query(demo_download, documented()["coverage_per_ticker"])}
    assert coverage["NOSUCH"]["bars"] == 0 and coverage["NOSUCH"]["with_bars"] == 0
    assert coverage["AAPL"]["failed"] == 3  # the demo's plan is entitled from 2022-10 only
    holes = run_query(demo_download, documented()["holes"])
    assert {row["state"] for row in holes} == {"failed"} and len(holes) == 24 + 8  # minute + day
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
    assert minute["by_year"][0]["failed"] == 24 and sum(y["failed"] for y in minute["by_year"]) == 24
    assert sum(y["units"] for y in minute["by_year"]) == minute["units"]
    assert minute["tickers_without_data"] == ["NOSUCH"]  # confirmed empty, some months failed

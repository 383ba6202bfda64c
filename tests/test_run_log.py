"""`run --log-file F`: what F holds is worth keeping. One line per retried request (its
error class, HTTP status, request id, attempt and delay; never the key), one line per unit
with its final state, and one line for the run's end, checked against what the stand-in
says it injected and what the ledger says happened."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter

from support import API_KEY, FAULT_CLASSES, UNKNOWN, run_cli, write_universe

from polyledger.testing import FaultPlan, StandInServer

# the error class each injected fault is retried as
RETRY = re.compile(
    r"request retried: class=(\S+) status=(\S+) request_id=(\S+) attempt=(\d+) delay=(\d+\.\d\d)s$"
)
UNIT = re.compile(r"unit: dataset=(\S+) ticker=(\S+) period=(\S+)\.\.(\S+) state=(\S+) (rows|class)=(\S+)$")
END = re.compile(
    r"run ended: run_id=(\w+) outcome=(\w+) units_settled=(\d+) failed=(\d+) requests=(\d+) http_429=(\d+)$"
)


def test_the_log_file_has_every_retry_every_unit_and_the_end(work, market):
    """No slow answers and no server rate limit: every retry is one of the faults the
    stand-in counted, so the count is exact on any machine."""
    faults = FaultPlan(rate=0.15, kinds=tuple(FAULT_CLASSES), seed=11, retry_after=True)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=4_000, faults=faults) as server:
        write_universe(work / "universe.csv", ["AAPL", "TINY", UNKNOWN])
        run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-06-30")
        run_cli(
            "plan",
            "--universe",
            "universe.csv",
            "--dataset",
            "day",
            "--from",
            "2022-01-01",
            "--to",
            "2023-06-30",
        )
        result = run_cli(
            "run", "--base-url", server.url, "--workers", "4", "--rate", "500", "--log-file", "run.log"
        )
        injected = server.stats.snapshot()["faults"]
    assert result.code == 0, result.out + result.err
    text = (work / "run.log").read_text(encoding="utf-8")
    assert API_KEY not in text and API_KEY[:12] not in text
    messages = [line.split(": ", 1)[1] for line in text.splitlines()]

    retries = [match.groups() for match in map(RETRY.search, messages) if match]
    assert sum(injected.values()) >= 10, injected  # the seeded plan injects plenty
    assert Counter(error_class for error_class, *_ in retries) == Counter(
        {FAULT_CLASSES[kind]: count for kind, count in injected.items()}
    )
    for error_class, status, request_id, attempt, _delay in retries:
        assert int(attempt) >= 1
        if error_class.startswith("http_"):  # an HTTP answer: its status, and its id when it sent one
            assert status == error_class.removeprefix("http_")
        if error_class in ("http_429", "http_500"):  # the stand-in's JSON errors carry a request id
            assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        if error_class in ("connection", "truncated"):  # no answer to speak of
            assert request_id == "-"

    with sqlite3.connect(work / "ledger.db") as connection:
        units = {
            (dataset, ticker, start): (state, rows)
            for dataset, ticker, start, state, rows in connection.execute(
                "SELECT dataset, ticker, period_start, state, rows FROM units"
            )
        }
        run_id, outcome, settled, requests = connection.execute(
            "SELECT id, outcome, units_settled, requests FROM runs"
        ).fetchone()
    logged = Counter()
    for match in map(UNIT.search, messages):
        if match:
            dataset, ticker, start, _end, state, key, value = match.groups()
            assert key == "rows"
            assert units[(dataset, ticker, start)] == (state, int(value))
            logged[(dataset, ticker, start)] += 1
    assert logged == Counter(dict.fromkeys(units, 1))

    ends = [match.groups() for match in map(END.search, messages) if match]
    assert ends == [(run_id, outcome, str(settled), "0", str(requests), str(injected["429"]))]
    assert (outcome, settled) == ("finished", len(units))

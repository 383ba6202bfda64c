"""Beyond one machine: three `run` processes share one PostgreSQL ledger and one S3 bucket,
against an API that limits the key they share and refuses a known number of their requests.
No unit is claimed twice, every bar arrives once, and every refused request is sent again
and reported. How few requests are refused, and how much of the key's budget hosts use
together, are speed figures: `bench/ratelimit.py` measures them with real processes, and
`tests/test_ratelimit.py` proves convergence on a virtual clock, where a busy test machine
cannot change the answer."""

from __future__ import annotations

import datetime as dt
import os

from polars.testing import assert_frame_equal
from support import API_KEY, run_cli, run_side_by_side, write_universe
from test_end_to_end import assert_every_refusal_was_sent_again, client_counts, refuse_after_burst
from test_postgres import admin_url, new_database, pg_url  # noqa: F401 - fixtures
from test_s3 import bucket, expected, moto_endpoint, read_s3_dataset  # noqa: F401 - fixtures

from polyledger.ledger import Ledger
from polyledger.testing import Listing, StandInServer, SyntheticMarket

D = dt.date
LIMIT = 12  # requests/second the API allows the shared key
REFUSALS = 6  # requests the API refuses after its burst (on a scripted clock: exactly these)


def test_three_processes_share_a_postgres_ledger_an_s3_bucket_and_the_rate_limit(
    work,
    pg_url,  # noqa: F811
    bucket,  # noqa: F811
    monkeypatch,
):
    tickers = [f"H{i:02d}" for i in range(24)]
    market = SyntheticMarket([Listing(t, bars_per_day=4) for t in tickers], seed=8)
    write_universe(work / "u.csv", tickers)
    data = f"s3://{bucket}/bars"
    for dataset in ("minute", "day"):  # minute: one request per ticker-group; day: one per ticker
        planned = run_cli(
            "plan",
            "--universe",
            "u.csv",
            "--dataset",
            dataset,
            "--from",
            "2024-01-01",
            "--to",
            "2024-06-30",
            "--ledger",
            pg_url,
        )
        assert planned.code == 0, planned.err
    refuse_after_burst(monkeypatch, rate_limit=LIMIT, refusals=REFUSALS)  # the API runs in this process
    with StandInServer(market, api_keys=(API_KEY,), rate_limit=LIMIT, page_cap=100) as api:
        # small pages: each process needs many requests, so the shared limit really binds
        runs = run_side_by_side(
            [
                "run",
                "--base-url",
                api.url,
                "--ledger",
                pg_url,
                "--data",
                data,
                "--workers",
                4,
                "--rate",
                2 * LIMIT,
            ],
            3,
            cwd=work,
            timeout=300,
        )
        stats = api.stats.snapshot()
    assert [run.code for run in runs] == [0, 0, 0], runs
    # each page answered once; the refused requests, and only they, were sent again, and the
    # processes between them report every request and every 429
    assert_every_refusal_was_sent_again(stats, refusals=REFUSALS)
    sent, throttled = zip(*(client_counts(run.out) for run in runs), strict=True)
    assert (sum(sent), sum(throttled)) == (stats["bars_requests"], REFUSALS)

    with Ledger(pg_url, create=False) as ledger:
        attempts = ledger.query("SELECT max(attempts) AS most, count(*) AS units FROM units")[0]
        runs = ledger.query(
            "SELECT count(*) AS n, sum(units_settled) AS settled, sum(requests) AS requests FROM runs"
        )[0]
        states = dict(ledger.query("SELECT state, count(*) FROM units GROUP BY state"))
    assert runs.n == 3 and runs.settled == attempts.units  # every unit settled exactly once, by someone
    assert runs.requests == stats["bars_requests"]  # the ledger counted every request the API saw
    assert attempts.most == 1  # no unit claimed twice
    assert set(states) <= {"done", "empty_confirmed"}
    for dataset in ("minute", "day"):
        assert_frame_equal(
            read_s3_dataset(data, dataset), expected(market, dataset, tickers, D(2024, 1, 1), D(2024, 6, 30))
        )
    assert run_cli("audit", "--deep", "--ledger", pg_url, "--data", data).code == 0
    assert not os.path.exists(work / "data")  # nothing went to a local folder

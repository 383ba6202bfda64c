"""The API's clock, not this machine's, says whether a unit's last day has ended: an API
whose today lies inside a unit answers with that day's bars so far (or, for a range
reaching past it, only up to it), and such a unit must settle neither `done` with a hole
at its end nor `empty_confirmed`. plan refuses a day this machine's clock has not ended;
the API's clock (its `Date` header) may be behind it."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
import requests
from polars.testing import assert_frame_equal
from support import API_KEY, read_dataset, run_cli, truth, write_universe

from polyledger.periods import ET
from polyledger.polygon.client import _served_at
from polyledger.testing import StandInServer

D = dt.date


def units_of(work) -> list[tuple]:
    with sqlite3.connect(work / "ledger.db") as connection:
        return connection.execute(
            "SELECT period_start, state, error_class FROM units ORDER BY period_start"
        ).fetchall()


@pytest.mark.parametrize("ticker", ["MID3", "TINY"])  # bars on most days / on few days
def test_a_month_the_api_has_not_ended_fails_not_ended_and_a_retry_after_it_ends_gets_it_whole(
    work, market, ticker
):
    # the stand-in's today is 2024-03-12 and it answers a range reaching past it with the
    # bars up to it (straddle="clip"), as an API with a `to` in its future may
    with StandInServer(market, api_keys=(API_KEY,), today=D(2024, 3, 12), straddle="clip") as server:
        write_universe(work / "universe.csv", [ticker])
        planned = run_cli("plan", "--universe", "universe.csv", "--from", "2024-02-01", "--to", "2024-03-31")
        assert planned.code == 0, planned.err
        result = run_cli("run", "--base-url", server.url, "--workers", "1", "--max-attempts", "1")
        assert result.code == 1, result.out + result.err
        assert units_of(work) == [("2024-02-01", "done", None), ("2024-03-01", "failed", "not_ended")]
        audit = run_cli("audit", "--json")
        assert audit.code == 1
        (failure,) = json.loads(audit.out)["datasets"][0]["failures"]
        assert (failure["error_class"], failure["units"]) == ("not_ended", 1)
        # once March has ended for the API too, the default retry (transient classes) gets it
        server.today = D(2024, 4, 2)
        assert run_cli("retry").code == 0
        assert run_cli("run", "--base-url", server.url).code == 0
    assert units_of(work) == [("2024-02-01", "done", None), ("2024-03-01", "done", None)]
    stored = read_dataset(work / "data", "minute")
    assert_frame_equal(stored, truth(market, "minute", ticker, D(2024, 2, 1), D(2024, 3, 31)))


def test_the_stand_ins_date_header_is_its_clock(market):
    with StandInServer(market, api_keys=(API_KEY,), today=D(2024, 3, 12)) as server:
        answer = requests.get(
            f"{server.url}/v2/aggs/ticker/MID3/range/1/day/2024-03-01/2024-03-08",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
    assert answer.status_code == 200
    served = dt.datetime.fromtimestamp(_served_at(answer), tz=ET)
    assert served == dt.datetime(2024, 3, 12, 12, tzinfo=ET)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 12 Mar 2024 16:00:00 GMT", dt.datetime(2024, 3, 12, 16, tzinfo=dt.timezone.utc)),
        ("Tue, 12 Mar 2024 16:00:00 -0000", dt.datetime(2024, 3, 12, 16, tzinfo=dt.timezone.utc)),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_an_answers_date_header_is_read_as_gmt_and_a_garbled_one_as_none(header, expected):
    answer = requests.Response()
    if header is not None:
        answer.headers["Date"] = header
    served = _served_at(answer)
    assert served == (expected.timestamp() if expected else None)


def test_a_grouped_days_bars_the_api_has_not_ended_fail_not_ended_too(work, market):
    """A day of grouped bars (fetched whole, not by range) is judged by the API's clock too
    (found by a review of the change: it settled `done` with the day so far); reference
    data as of today (details) is not."""
    # the stand-in's clock (its Date header) is noon US/Eastern of 2024-03-12: that day has
    # not ended for the API; a range unit over it fails not_ended, a grouped daily unit must too
    with StandInServer(market, api_keys=(API_KEY,), today=D(2024, 3, 12)) as server:
        planned = run_cli("plan", "--dataset", "grouped_daily", "--from", "2024-03-11", "--to", "2024-03-12")
        assert planned.code == 0, planned.err + planned.out
        run_cli("run", "--base-url", server.url, "--workers", "1", "--max-attempts", "1")
    with sqlite3.connect(work / "ledger.db") as connection:
        states = connection.execute(
            "SELECT period_start, state, error_class FROM units WHERE dataset = 'grouped_daily' "
            "ORDER BY period_start"
        ).fetchall()
    assert states[0][1] == "done"
    assert states[1][1:] == ("failed", "not_ended"), states

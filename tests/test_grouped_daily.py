"""Grouped daily bars, a dataset keyed by date: the NYSE calendar plans it, the recorded
sample decodes, plan -> run -> audit -> report -> notebook read equals the market's truth
bar for bar, and `audit --quality` catches the disagreements the stand-in injects."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import API_KEY, LISTINGS, UNKNOWN, read_dataset, run_cli, truth, write_universe

import polyledger
from polyledger.datasets import MARKET
from polyledger.polygon.grouped import decode_grouped
from polyledger.testing import StandInServer
from polyledger.testing.server import Defects
from polyledger.trading_days import is_trading_day, trading_days

D = dt.date
SAMPLE = "fixtures/api-mocks/v2/aggs/grouped/locale/us/market/stocks/2005-04-04&adjusted=true.json"
START, END = D(2024, 3, 25), D(2024, 4, 5)  # two weeks around Good Friday, 2024-03-29
TRADING = [D(2024, 3, d) for d in (25, 26, 27, 28)] + [D(2024, 4, d) for d in (1, 2, 3, 4, 5)]
TICKERS = [listing.ticker for listing in LISTINGS]


def test_the_calendar_knows_weekends_holidays_and_special_closures():
    for closed in ("2012-10-29", "2012-10-30", "2025-01-09", "2024-03-29", "2024-07-04", "2024-03-30"):
        assert not is_trading_day(D.fromisoformat(closed)), closed
    for open_ in ("2012-10-31", "2025-01-10", "2024-03-28", "2024-07-03"):
        assert is_trading_day(D.fromisoformat(open_)), open_
    assert trading_days(START, END) == TRADING


def test_the_recorded_sample_decodes(request):
    body = (request.path.parent / SAMPLE).read_bytes()
    page = decode_grouped(body)
    assert page.adjusted is True and page.next_url is None
    assert page.request_id == "eae3ded2d6d43f978125b7a8a609fad9"
    row = page.bars.row(0, named=True)
    assert (row["T"], row["t"], row["o"], row["c"], row["v"], row["n"]) == (
        "GIK",
        1602705600000,
        9.99,
        10.02,
        895345.0,
        96,
    )
    assert row["otc"] is None


def test_a_count_without_results_is_never_an_empty_day():
    from polyledger.errors import TransientError

    with pytest.raises(TransientError, match="resultsCount"):
        decode_grouped(b'{"status":"OK","resultsCount":3,"request_id":"x"}')
    assert decode_grouped(b'{"status":"OK","resultsCount":0,"request_id":"x"}').bars.height == 0


@pytest.mark.parametrize("count", [0, 2])
def test_a_count_other_than_the_bars_sent_is_bad_shape(count):
    from polyledger.errors import TransientError

    bar = {"T": "A", "t": 1602705600000, "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0}
    body = orjson.dumps({"status": "OK", "resultsCount": count, "request_id": "x", "results": [bar]})
    with pytest.raises(TransientError, match=f"^resultsCount {count} but 1 bars$") as raised:
        decode_grouped(body)
    assert raised.value.error_class == "bad_shape"


def grouped_truth(market, day: dt.date, tickers=TICKERS) -> pl.DataFrame:
    """Every listing's adjusted day bar of `day`, stamped 16:00 ET as grouped daily sends it."""
    close = dt.datetime.combine(day, dt.time(16), tzinfo=polyledger.periods.ET)
    frames = [truth(market, "day", ticker, day, day, adjusted=True) for ticker in tickers]
    stamp = pl.lit(close).dt.convert_time_zone("UTC").dt.cast_time_unit("ms")
    return pl.concat(frames).with_columns(stamp.alias("timestamp"))


def plan_and_run(work, server, *, day_tickers=TICKERS, short=()) -> None:
    """Grouped daily and day units over [START, END]; the `short` tickers' day units end
    on 2024-03-28."""
    write_universe(work / "universe.csv", [*day_tickers, UNKNOWN])
    if short:
        write_universe(work / "short.csv", list(short))
        partial = (
            "plan",
            "--universe",
            "short.csv",
            "--dataset",
            "day",
            "--from",
            START,
            "--to",
            "2024-03-28",
        )
        assert run_cli(*partial).code == 0
    planned = run_cli("plan", "--dataset", "grouped_daily", "--from", START, "--to", END)
    assert planned.code == 0, planned.err + planned.out
    assert "planned 9 grouped_daily units, one per trading day" in planned.out
    day = ("plan", "--universe", "universe.csv", "--dataset", "day", "--from", START, "--to", END)
    assert run_cli(*day).code == 0
    result = run_cli("run", "--base-url", server.url, "--workers", "4", "--rate", "2000")
    assert result.code == 0, result.err + result.out


def test_plan_run_audit_report_and_read_equal_the_truth(work, market, server):
    plan_and_run(work, server)
    with sqlite3.connect(work / "ledger.db") as connection:
        units = connection.execute(
            "SELECT ticker, period, period_start, period_end, state, file_path FROM units "
            "WHERE dataset = 'grouped_daily' ORDER BY period"
        ).fetchall()
    # one unit per trading day, none on Good Friday or the weekends, each keyed by the market
    assert [D.fromisoformat(period) for _, period, *_ in units] == TRADING
    for ticker, period, first, last, state, path in units:
        assert (ticker, first, last, state) == (MARKET, period, period, "done")
        assert path == f"grouped_daily/year=2024/month={period[5:7]}/date={period}/part.parquet"
    grouped_requests = [t for t in server.stats.snapshot()["targets"] if "/grouped/" in t]
    assert sorted(t.split("/")[-1].split("?")[0] for t in grouped_requests) == [
        d.isoformat() for d in TRADING
    ]

    audit = run_cli("audit", "--json")
    assert audit.code == 0, audit.out
    entry = next(d for d in json.loads(audit.out)["datasets"] if d["dataset"] == "grouped_daily")
    assert entry["units"] == 9 and entry["by_state"]["done"] == 9
    assert entry["by_year"] == [{"year": "2024", "units": 9, "settled": 9, "failed": 0}]
    quality = run_cli("audit", "--quality", "--json")
    assert quality.code == 0, quality.out
    checked = json.loads(quality.out)["quality"]
    assert "grouped_daily" in checked["datasets"] and checked["clean"], checked
    assert run_cli("report", "--out", "report.html").code == 0
    assert "grouped_daily" in (work / "report.html").read_text(encoding="utf-8")

    expected = pl.concat([grouped_truth(market, day) for day in TRADING]).sort("ticker", "timestamp")
    assert expected.height > 0
    assert_frame_equal(read_dataset(work / "data", "grouped_daily"), expected)
    with polyledger.open(work / "ledger.db", work / "data") as dl:
        read = dl.bars("grouped_daily").collect().sort("ticker", "timestamp")
        assert_frame_equal(read.select(expected.columns), expected)
        one = dl.bars("grouped_daily", tickers=["AAPL"], start="2024-04-02", end="2024-04-02").collect()
        assert_frame_equal(one.select(expected.columns), grouped_truth(market, D(2024, 4, 2), ["AAPL"]))


def test_the_stand_in_answers_a_closed_day_with_nothing(server):
    import requests

    for closed in ("2024-03-29", "2024-03-30"):
        response = requests.get(
            f"{server.url}/v2/aggs/grouped/locale/us/market/stocks/{closed}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        body = response.json()
        assert response.status_code == 200 and body["resultsCount"] == 0 and "results" not in body


def flags(work) -> list[tuple[str, str, str]]:
    with sqlite3.connect(work / "ledger.db") as connection:
        return connection.execute(
            "SELECT check_name, ticker, session_date FROM quality_flags WHERE dataset = 'grouped_daily' "
            "ORDER BY check_name, ticker"
        ).fetchall()


def test_the_cross_check_catches_what_the_stand_in_changes_or_leaves_out(work, market):
    defects = Defects(
        grouped_changed={("AAPL", D(2024, 4, 2))},
        grouped_left_out={("SIRI", D(2024, 4, 3))},
    )
    # MID3 has no day units, MID2's end on 2024-03-28: they are in the grouped bars of days
    # no day unit of theirs covers, and that is no finding
    day_tickers = [t for t in TICKERS if t not in ("MID2", "MID3")]
    with StandInServer(market, api_keys=(API_KEY,), defects=defects) as server:
        plan_and_run(work, server, day_tickers=day_tickers, short=["MID2"])
    # a day file that lost one session of MID1 (the grouped bars still have it)
    with sqlite3.connect(work / "ledger.db") as connection:
        (path,) = connection.execute(
            "SELECT file_path FROM units WHERE dataset = 'day' AND ticker = 'MID1'"
        ).fetchone()
    day_file = work / "data" / path
    bars = pl.read_parquet(day_file)
    session = pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date()
    bars.filter(session != D(2024, 4, 4)).write_parquet(day_file)

    checked = run_cli("audit", "--quality", "--json")
    assert checked.code == 1, checked.out
    assert flags(work) == [
        ("grouped_mismatch", "AAPL", "2024-04-02"),
        ("missing_in_day", "MID1", "2024-04-04"),
        ("missing_in_grouped", "SIRI", "2024-04-03"),
    ]


def test_the_cross_check_passes_without_disagreements(work, market, server):
    plan_and_run(work, server, day_tickers=[t for t in TICKERS if t not in ("MID2", "MID3")], short=["MID2"])
    assert run_cli("audit", "--quality").code == 0
    assert flags(work) == []

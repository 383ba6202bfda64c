"""Reference endpoints and split-adjusted bars of the stand-in, over real HTTP.

Shapes are checked against the recorded samples in tests/fixtures: the stand-in must
answer with exactly the keys the real API does.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
import requests
from test_server import bucket_clock  # noqa: F401 - fixture: the stand-in's rate-limit clock, frozen

from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.testing.market import BAR_SCHEMA, et_date, et_midnight_ms

D = dt.date
KEY = "reference-test-key"
FIXTURES = Path(__file__).parents[1] / "fixtures"
SPLIT_DAY = D(2024, 3, 13)  # AAA's 1-for-4 forward split and BBB's 10-for-1 reverse split

LISTINGS = [
    Listing(
        "AAA",
        splits=(Split(SPLIT_DAY, 1, 4), Split(D(2010, 6, 1), 2, 3)),
        dividends=(Dividend(D(2024, 2, 15), 0.5), Dividend(D(2024, 6, 12), 0.2, pay_date=D(2024, 6, 20))),
    ),
    Listing("BBB", splits=[Split(SPLIT_DAY, 10, 1)], bars_per_day=300),
    Listing("CCC", primary_exchange="XNYS", type="ETF", name="CCC Index Fund"),
    Listing("DDD", list_date=D(2010, 1, 4), delist_date=D(2015, 6, 30)),
    Listing("EEE", list_date=D(2020, 1, 2)),
    Listing("FFF", delist_date=D(2020, 6, 30)),
    Listing("GGG", dividends=(Dividend(D(2023, 8, 10), 1.25, frequency=0),)),
]
ALL = sorted(listing.ticker for listing in LISTINGS)
DELISTED = ["DDD", "FFF"]


@pytest.fixture(scope="module")
def ref_market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=11)


@pytest.fixture(scope="module")
def server(ref_market: SyntheticMarket) -> Iterator[StandInServer]:
    with StandInServer(ref_market, api_keys=(KEY,)) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        yield session


def get(http: requests.Session, server: StandInServer, path: str, **params: object) -> dict:
    r = http.get(f"{server.url}{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def walk(http: requests.Session, server: StandInServer, path: str, **params: object) -> list[dict]:
    """Every page, following next_url exactly as given (key in the header only)."""
    pages = [get(http, server, path, **params)]
    while "next_url" in pages[-1]:
        assert len(pages) < 100, "pagination does not end"
        r = http.get(pages[-1]["next_url"], timeout=10)
        assert r.status_code == 200, r.text
        pages.append(r.json())
    return pages


def tickers(pages: list[dict]) -> list[str]:
    return [row["ticker"] for page in pages for row in page["results"]]


def sample_keys(name: str) -> set[str]:
    results = json.loads((FIXTURES / "spec-examples" / name).read_text())["results"]
    return set(results[0] if isinstance(results, list) else results)


# -- /v3/reference/tickers ------------------------------------------------------------------


def test_pagination_walks_every_ticker_exactly_once(http, server) -> None:
    active = walk(http, server, "/v3/reference/tickers", limit=2)
    assert tickers(active) == sorted(set(ALL) - set(DELISTED))  # ascending, no repeats
    assert [page["count"] for page in active] == [len(page["results"]) for page in active] == [2, 2, 1]
    assert "next_url" not in active[-1]
    for page in active[:-1]:
        url = urlsplit(page["next_url"])
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{server.url}/v3/reference/tickers"
        assert list(parse_qs(url.query)) == ["cursor"] and KEY not in page["next_url"]  # never the key
        cursor = parse_qs(url.query)["cursor"][0]
        decoded = parse_qs(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        assert decoded["limit"] == ["2"] and decoded["active"] == ["true"] and "page_marker" in decoded
    assert all(page["status"] == "OK" and len(page["request_id"]) == 32 for page in active)
    one_by_one = walk(http, server, "/v3/reference/tickers", limit=1, active="false")
    assert tickers(one_by_one) == DELISTED and len(one_by_one) == 2


def test_active_true_and_false_partition_the_listings(http, server) -> None:
    default = tickers(walk(http, server, "/v3/reference/tickers"))
    alive = tickers(walk(http, server, "/v3/reference/tickers", active="true"))
    dead = tickers(walk(http, server, "/v3/reference/tickers", active="false"))
    assert default == alive and not set(alive) & set(dead)
    assert sorted(alive + dead) == ALL


def test_delisted_names_carry_delisted_utc(http, server) -> None:
    rows = get(http, server, "/v3/reference/tickers", active="false")["results"]
    # "the last date that the asset was traded": the last session, at 00:00 UTC
    assert {r["ticker"]: r["delisted_utc"] for r in rows} == {
        "DDD": "2015-06-30T00:00:00Z",
        "FFF": "2020-06-30T00:00:00Z",
    }
    assert all(r["active"] is False for r in rows)
    alive = get(http, server, "/v3/reference/tickers")["results"]
    assert all(r["active"] is True and "delisted_utc" not in r for r in alive)


def test_list_rows_have_exactly_the_recorded_keys(http, server) -> None:
    row = get(http, server, "/v3/reference/tickers", ticker="AAA")["results"][0]
    recorded = json.loads((FIXTURES / "api-mocks/v3/reference/tickers.json").read_text())["results"][0]
    assert set(row) == set(recorded) == sample_keys("v3_reference_tickers.example.json")
    assert row["market"] == "stocks" and row["locale"] == "us" and row["currency_name"] == "usd"
    assert re.fullmatch(r"\d{10}", row["cik"])
    assert re.fullmatch(r"BBG[0-9A-Z]{9}", row["composite_figi"])
    assert re.fullmatch(r"BBG[0-9A-Z]{9}", row["share_class_figi"])
    dead = get(http, server, "/v3/reference/tickers", ticker="DDD", active="false")["results"][0]
    assert set(dead) == set(recorded) | {"delisted_utc"}


@pytest.mark.parametrize(
    ("date", "alive", "dead"),
    [
        ("2009-12-31", ["AAA", "BBB", "CCC", "FFF", "GGG"], []),  # DDD not listed yet: in neither
        ("2010-01-04", ["AAA", "BBB", "CCC", "DDD", "FFF", "GGG"], []),  # its first session
        ("2015-06-30", ["AAA", "BBB", "CCC", "DDD", "FFF", "GGG"], []),  # its last session
        ("2015-07-01", ["AAA", "BBB", "CCC", "FFF", "GGG"], ["DDD"]),
        ("2020-07-01", ["AAA", "BBB", "CCC", "EEE", "GGG"], ["DDD", "FFF"]),
    ],
)
def test_date_is_a_point_in_time(http, server, date: str, alive: list[str], dead: list[str]) -> None:
    rows = get(http, server, "/v3/reference/tickers", date=date)["results"]
    assert [r["ticker"] for r in rows] == alive
    assert all(r["active"] and "delisted_utc" not in r for r in rows)  # later delistings are not known yet
    assert {r["last_updated_utc"] for r in rows} == {f"{date}T00:00:00Z"}
    assert tickers([get(http, server, "/v3/reference/tickers", date=date, active="false")]) == dead


def test_list_filters(http, server) -> None:
    def listed(**params: object) -> list[str]:
        return tickers(walk(http, server, "/v3/reference/tickers", **params))

    assert listed(type="ETF") == ["CCC"] and listed(exchange="XNYS") == ["CCC"]
    assert listed(type="CS", exchange="XNAS", market="stocks") == ["AAA", "BBB", "EEE", "GGG"]
    assert listed(market="crypto") == [] and listed(ticker="AA") == []
    assert listed(ticker="GGG") == ["GGG"] and listed(**{"ticker.gte": "C", "ticker.lt": "G"}) == [
        "CCC",
        "EEE",
    ]
    assert listed(order="desc", limit=3) == ["GGG", "EEE", "CCC", "BBB", "AAA"]
    assert listed(search="index fund") == ["CCC"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v3/reference/tickers", {"limit": 1001}),
        ("/v3/reference/tickers", {"limit": 0}),
        ("/v3/reference/tickers", {"active": "maybe"}),
        ("/v3/reference/tickers", {"date": "2024-13-01"}),
        ("/v3/reference/tickers", {"sort": "favourite"}),
        ("/v3/reference/tickers", {"cursor": "!!!"}),
        (
            "/v3/reference/tickers",
            {"cursor": base64.urlsafe_b64encode(b"limit=2&page_marker=AAA|x").decode()},
        ),
        ("/stocks/v1/splits", {"limit": 5001}),
        ("/stocks/v1/dividends", {"limit": 5001}),
        ("/stocks/v1/splits", {"execution_date.gte": "soon"}),
        ("/v3/reference/splits", {"limit": 1001}),
        ("/v3/reference/dividends", {"limit": 1001}),
        ("/v3/reference/tickers/AAA", {"date": "yesterday"}),
    ],
)
def test_bad_reference_requests_are_400(http, server, path: str, params: dict) -> None:
    r = http.get(f"{server.url}{path}", params=params, timeout=10)
    assert r.status_code == 400
    assert r.json()["status"] == "ERROR" and r.json()["error"].startswith("Failed to parse query parameters")


def test_largest_limits_are_accepted(http, server) -> None:
    assert get(http, server, "/v3/reference/tickers", limit=1000)["count"] == 5
    assert len(get(http, server, "/stocks/v1/splits", limit=5000)["results"]) == 3
    assert len(get(http, server, "/stocks/v1/dividends", limit=5000)["results"]) == 3


# -- /v3/reference/tickers/{T} -------------------------------------------------------------


def test_details_carry_identifiers_list_date_and_market_cap(http, server, ref_market) -> None:
    aaa = get(http, server, "/v3/reference/tickers/AAA")["results"]
    assert aaa["market_cap"] > 0 and aaa["weighted_shares_outstanding"] > 0
    assert D(1985, 1, 1) <= D.fromisoformat(aaa["list_date"]) <= D(2003, 12, 31)  # stand-in date
    assert D.fromisoformat(aaa["list_date"]).weekday() < 5
    assert ref_market.bars("day", "AAA", et_midnight_ms(D(1980, 1, 2)), et_midnight_ms(D(1980, 1, 9))).height
    listed = get(http, server, "/v3/reference/tickers", ticker="AAA")["results"][0]
    for key in ("cik", "composite_figi", "share_class_figi", "name", "primary_exchange", "type"):
        assert aaa[key] == listed[key]
    ddd = get(http, server, "/v3/reference/tickers/DDD")["results"]
    assert ddd["list_date"] == "2010-01-04" and ddd["active"] is False
    assert ddd["delisted_utc"] == "2015-06-30T00:00:00Z"  # its last session
    then = get(http, server, "/v3/reference/tickers/DDD", date="2012-05-01")["results"]
    assert then["active"] is True and "delisted_utc" not in then and then["list_date"] == "2010-01-04"
    ccc = get(http, server, "/v3/reference/tickers/CCC")["results"]
    assert (ccc["name"], ccc["type"], ccc["primary_exchange"]) == ("CCC Index Fund", "ETF", "XNYS")
    assert set(aaa) <= sample_keys("v3_reference_tickers_ticker.example.json")


def test_details_of_an_unknown_ticker_is_404(http, server) -> None:
    r = http.get(f"{server.url}/v3/reference/tickers/NOPE", params={"date": "2020-01-02"}, timeout=10)
    assert r.status_code == 404
    assert r.json() == {
        "status": "NOT_FOUND",
        "request_id": r.json()["request_id"],
        "message": "Ticker not found.",
    }


# -- splits and dividends ------------------------------------------------------------------


def test_splits_have_the_sample_shape_and_factors(http, server) -> None:
    rows = get(http, server, "/stocks/v1/splits", ticker="AAA")["results"]
    assert all(set(r) == sample_keys("stocks_v1_splits.example.json") for r in rows)
    assert [r["execution_date"] for r in rows] == ["2024-03-13", "2010-06-01"]  # newest first
    assert [(r["split_from"], r["split_to"]) for r in rows] == [(1, 4), (2, 3)]
    assert all(type(r["split_from"]) is int for r in rows)  # whole ratios are written as integers
    assert [r["adjustment_type"] for r in rows] == ["forward_split", "forward_split"]
    # this split and every later one: 1/4, then 1/4 * 2/3
    assert [r["historical_adjustment_factor"] for r in rows] == [0.25, round(1 / 6, 6)]
    assert all(re.fullmatch(r"E[0-9a-f]{64}", r["id"]) for r in rows) and rows[0]["id"] != rows[1]["id"]
    bbb = get(http, server, "/stocks/v1/splits", ticker="BBB")["results"]
    assert bbb[0]["adjustment_type"] == "reverse_split" and bbb[0]["historical_adjustment_factor"] == 10
    assert get(http, server, "/stocks/v1/splits", ticker="NOPE")["results"] == []
    dated = get(http, server, "/stocks/v1/splits", ticker="AAA", **{"execution_date.gte": "2011-01-01"})
    assert [r["execution_date"] for r in dated["results"]] == ["2024-03-13"]


def test_all_splits_paginate_by_next_url(http, server) -> None:
    pages = walk(http, server, "/stocks/v1/splits", limit=1)
    rows = [r for page in pages for r in page["results"]]
    assert len(pages) == 3 and len({r["id"] for r in rows}) == 3
    assert [r["execution_date"] for r in rows] == ["2024-03-13", "2024-03-13", "2010-06-01"]
    assert all(page["next_url"].startswith(f"{server.url}/stocks/v1/splits?cursor=") for page in pages[:-1])
    assert "count" not in pages[0]  # the v1 body has none


def test_dividends_have_the_sample_shape_and_adjustments(http, server, ref_market) -> None:
    rows = get(http, server, "/stocks/v1/dividends", ticker="AAA")["results"]
    assert all(set(r) == sample_keys("stocks_v1_dividends.example.json") for r in rows)
    assert [r["ex_dividend_date"] for r in rows] == ["2024-06-12", "2024-02-15"]
    after, before = rows
    # the February dividend predates the 1-for-4 split: a quarter of it on today's basis
    assert (before["cash_amount"], before["split_adjusted_cash_amount"]) == (0.5, 0.125)
    assert (after["cash_amount"], after["split_adjusted_cash_amount"]) == (0.2, 0.2)
    assert after["pay_date"] == "2024-06-20" and after["record_date"] == "2024-06-12"  # T+1 era
    assert before["record_date"] == "2024-02-16"  # T+2 era: one session after the ex-date
    assert before["declaration_date"] < before["ex_dividend_date"] < before["pay_date"]
    assert (after["currency"], after["distribution_type"], after["frequency"]) == ("USD", "recurring", 4)
    prev_close = ref_market.day_bars(
        "AAA", et_midnight_ms(D(2024, 6, 11)), et_midnight_ms(D(2024, 6, 12)), adjusted=True
    )["c"][0]
    assert after["historical_adjustment_factor"] == round(1 - 0.2 / prev_close, 6)
    assert (
        0 < before["historical_adjustment_factor"] < after["historical_adjustment_factor"] < 1
    )  # cumulative
    special = get(http, server, "/stocks/v1/dividends", ticker="GGG")["results"][0]
    assert (special["distribution_type"], special["frequency"]) == ("special", 0)
    everyone = walk(http, server, "/stocks/v1/dividends", limit=2)
    assert [r["ticker"] for page in everyone for r in page["results"]] == ["AAA", "AAA", "GGG"]
    assert get(http, server, "/stocks/v1/dividends", ticker="NOPE")["results"] == []


def test_deprecated_v3_splits_and_dividends_have_the_sample_shapes(http, server) -> None:
    splits = walk(http, server, "/v3/reference/splits", ticker="AAA", limit=1)
    assert [r["execution_date"] for page in splits for r in page["results"]] == ["2024-03-13", "2010-06-01"]
    assert set(splits[0]["results"][0]) == sample_keys("v3_reference_splits.example.json")
    reverse = get(http, server, "/v3/reference/splits", reverse_split="true")["results"]
    assert [r["ticker"] for r in reverse] == ["BBB"]
    dividends = get(http, server, "/v3/reference/dividends")["results"]
    assert [r["ex_dividend_date"] for r in dividends] == ["2024-06-12", "2024-02-15", "2023-08-10"]
    assert all(set(r) == sample_keys("v3_reference_dividends.example.json") for r in dividends)
    assert [r["dividend_type"] for r in dividends] == ["CD", "CD", "SC"]


def test_reference_endpoints_share_auth_rate_limit_and_stats(ref_market, bucket_clock) -> None:  # noqa: F811
    # the bucket's clock is frozen, so the second request finds it empty however slow the first was
    with StandInServer(ref_market, api_keys=(KEY,), rate_limit=1.0) as server:
        for path in ("/v3/reference/tickers", "/stocks/v1/splits", "/stocks/v1/dividends"):
            assert requests.get(f"{server.url}{path}", timeout=10).status_code == 401
        url = f"{server.url}/stocks/v1/splits?apiKey={KEY}"
        assert requests.get(url, timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 429  # one bucket per key, as aggregates
        assert server.stats.by_kind == {"tickers": 1, "splits": 3, "dividends": 1}
        assert all("apiKey" not in target for target in server.stats.targets)


def test_same_market_same_bytes_apart_from_request_id(ref_market) -> None:
    twin = SyntheticMarket(LISTINGS, seed=11)
    bodies = []
    for market in (ref_market, twin):
        with StandInServer(market, api_keys=(KEY,)) as server:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {KEY}"
            pages = [
                walk(session, server, path, limit=2)
                for path in ("/v3/reference/tickers", "/stocks/v1/splits", "/stocks/v1/dividends")
            ]
            details = get(session, server, "/v3/reference/tickers/AAA")
            text = json.dumps([pages, details]).replace(server.url, "BASE")
            bodies.append(re.sub(r'"request_id": "[0-9a-f]{32}"', "", text))
    assert bodies[0] == bodies[1]


# -- split-adjusted bars -------------------------------------------------------------------


def bars(
    http, server, ticker: str, timespan: str, frm: str, to: str, adjusted: str
) -> tuple[dict, pl.DataFrame]:
    body = get(
        http,
        server,
        f"/v2/aggs/ticker/{ticker}/range/1/{timespan}/{frm}/{to}",
        adjusted=adjusted,
        limit=50000,
    )
    return body, pl.from_dicts(body["results"], schema=BAR_SCHEMA)


def with_date(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(d=pl.Series([et_date(t) for t in frame["t"]]))


@pytest.mark.parametrize(("ticker", "split_from", "split_to"), [("AAA", 1, 4), ("BBB", 10, 1)])
@pytest.mark.parametrize("timespan", ["minute", "day"])
def test_adjusted_bars_differ_by_the_split_ratio_before_the_split_only(
    http, server, ticker: str, split_from: int, split_to: int, timespan: str
) -> None:
    body_adj, adj = bars(http, server, ticker, timespan, "2024-03-11", "2024-03-14", "true")
    body_raw, raw = bars(http, server, ticker, timespan, "2024-03-11", "2024-03-14", "false")
    assert (body_adj["adjusted"], body_raw["adjusted"]) == (True, False)
    assert adj["t"].equals(raw["t"]) and adj.height > 0
    dates = with_date(raw)["d"]
    before, after = dates < SPLIT_DAY, dates >= SPLIT_DAY
    assert before.any() and after.any()
    assert adj.filter(after).equals(raw.filter(after))  # on and after the execution date: untouched
    old_adj, old_raw = adj.filter(before), raw.filter(before)
    # both series are rounded to the 1e-4 price grid from one generated series: they agree
    # with the split ratio to a tick (scaled by the ratio for a reverse split)
    tick = 1e-4 * max(1, split_from / split_to) + 1e-9
    for price in ("o", "h", "l", "c", "vw"):
        scaled = old_raw[price] * (split_from / split_to)
        slack = 2 * tick if timespan == "day" and price == "vw" else tick  # a day's vw is re-rounded
        assert ((old_adj[price] - scaled).abs() <= slack).all()
        assert old_adj[price].to_list() != old_raw[price].to_list()
    volume = old_raw["v"] * (split_to / split_from)
    if timespan == "minute":
        assert old_adj["v"].to_list() == volume.to_list()
    else:  # summed after scaling: equal up to float rounding
        assert ((old_adj["v"] - volume).abs() <= 1e-9 * volume).all()
    assert old_adj["n"].equals(old_raw["n"])  # trade counts are not adjusted
    default = get(http, server, f"/v2/aggs/ticker/{ticker}/range/1/{timespan}/2024-03-11/2024-03-14")
    assert default["adjusted"] is True and default["results"] == body_adj["results"]  # API default


def test_adjusted_day_bars_aggregate_the_adjusted_minute_bars(ref_market) -> None:
    window = (et_midnight_ms(D(2024, 3, 4)), et_midnight_ms(D(2024, 3, 23)))
    minutes = with_date(ref_market.minute_bars("AAA", *window, adjusted=True))
    expected = (
        minutes.group_by("d", maintain_order=True)
        .agg(
            o=pl.col("o").first(),
            h=pl.col("h").max(),
            l=pl.col("l").min(),
            c=pl.col("c").last(),
            v=pl.col("v").sum(),
            vw=((pl.col("vw") * pl.col("v")).sum() / pl.col("v").sum()).round(4),
            n=pl.col("n").sum(),
        )
        .with_columns(t=pl.Series([et_midnight_ms(d) for d in minutes["d"].unique(maintain_order=True)]))
    )
    days = ref_market.day_bars("AAA", *window, adjusted=True)
    columns = ["t", "o", "h", "l", "c", "v", "vw", "n"]
    assert days.select(columns).equals(expected.select(columns))
    assert (with_date(days)["d"] < SPLIT_DAY).any() and (with_date(days)["d"] >= SPLIT_DAY).any()
    # chunked paging of bars() gives the same adjusted bars as one call
    assert ref_market.bars("day", "AAA", *window, adjusted=True).equals(days)
    assert ref_market.bars("minute", "AAA", *window, adjusted=True, limit=500).equals(
        minutes.drop("d").head(500)
    )
    assert (days["l"] <= days["vw"]).all() and (days["vw"] <= days["h"]).all()


def test_a_listing_without_splits_has_equal_adjusted_and_raw_bars(http, server, ref_market) -> None:
    window = (et_midnight_ms(D(2024, 3, 4)), et_midnight_ms(D(2024, 3, 9)))
    for ticker in ("CCC", "GGG"):
        raw = ref_market.minute_bars(ticker, *window)
        assert ref_market.minute_bars(ticker, *window, adjusted=True).equals(raw)
        assert ref_market.day_bars(ticker, *window, adjusted=True).equals(
            ref_market.day_bars(ticker, *window)
        )
        _, served_adj = bars(http, server, ticker, "minute", "2024-03-04", "2024-03-08", "true")
        _, served_raw = bars(http, server, ticker, "minute", "2024-03-04", "2024-03-08", "false")
        assert served_adj.equals(served_raw) and served_raw.equals(raw)
    # splits long past leave recent bars alone too
    recent = (et_midnight_ms(D(2024, 4, 1)), et_midnight_ms(D(2024, 4, 6)))
    assert ref_market.minute_bars("AAA", *recent, adjusted=True).equals(
        ref_market.minute_bars("AAA", *recent)
    )

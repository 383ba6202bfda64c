"""The stand-in server, exercised over real HTTP the way the downloader will use it."""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest
import requests

from polyledger.testing import FaultPlan, StandInServer, SyntheticMarket
from polyledger.testing import server as server_module
from polyledger.testing.market import BAR_SCHEMA, et_midnight_ms

KEY = "demo-key"
D = dt.date
MakeServer = Callable[..., StandInServer]


def aggs_url(server: StandInServer, ticker: str, timespan: str, frm: object, to: object) -> str:
    return f"{server.url}/v2/aggs/ticker/{ticker}/range/1/{timespan}/{frm}/{to}"


def to_frame(results: list[dict]) -> pl.DataFrame:
    return pl.from_dicts(results, schema=BAR_SCHEMA)


def target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def follow(http: requests.Session, url: str, **params: object) -> list[dict]:
    """Every page of a request, following next_url exactly as given (key in the header)."""
    pages = [http.get(url, params=params, timeout=10).json()]
    while "next_url" in pages[-1]:
        assert len(pages) < 1000, "pagination does not end"
        pages.append(http.get(pages[-1]["next_url"], timeout=10).json())
    return pages


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- ET calendar semantics ---------------------------------------------------------------


def test_one_date_is_the_whole_et_session(server, http, market: SyntheticMarket) -> None:
    body = http.get(
        aggs_url(server, "DENSE", "minute", "2024-03-08", "2024-03-08"), params={"limit": 50000}
    ).json()
    bars = to_frame(body["results"])
    expected = market.minute_bars("DENSE", et_midnight_ms(D(2024, 3, 8)), et_midnight_ms(D(2024, 3, 9)))
    assert bars.equals(expected)
    assert body["resultsCount"] == body["queryCount"] == body["count"] == expected.height
    assert "next_url" not in body
    # EST: 04:00 ET = 09:00Z; 19:00-20:00 ET is already the next UTC day
    first, last = bars["t"].min(), bars["t"].max()
    assert first >= 1709888400000  # 2024-03-08T09:00Z
    assert last < 1709946000000  # 2024-03-09T01:00Z
    assert bars.filter(pl.col("t") >= 1709942400000).height > 0  # 2024-03-09T00:00Z or later
    # after the DST switch 04:00 ET is 08:00Z
    monday = to_frame(
        http.get(
            aggs_url(server, "DENSE", "minute", "2024-03-11", "2024-03-11"), params={"limit": 50000}
        ).json()["results"]
    )
    assert monday["t"].min() >= 1710144000000 and monday["t"].min() < 1710147600000


def test_epoch_ms_bounds_from_exact_to_inclusive(server, http, market) -> None:
    bars = market.minute_bars("DENSE", *(et_midnight_ms(D(2024, 3, 8)), et_midnight_ms(D(2024, 3, 9))))
    t0, t9 = int(bars["t"][0]), int(bars["t"][9])
    body = http.get(aggs_url(server, "DENSE", "minute", t0, t9)).json()
    assert to_frame(body["results"]).equals(bars.head(10))  # `to` in ms is inclusive
    one = http.get(aggs_url(server, "DENSE", "minute", t0, t0)).json()
    assert [r["t"] for r in one["results"]] == [t0]


def test_day_bars_match_the_market_and_start_at_et_midnight(server, http, market) -> None:
    body = http.get(aggs_url(server, "DENSE", "day", "2005-04-01", "2005-04-04")).json()
    assert [r["t"] for r in body["results"]] == [1112331600000, 1112587200000]
    year = http.get(aggs_url(server, "MID", "day", "2023-01-01", "2023-12-31")).json()
    expected = market.day_bars("MID", et_midnight_ms(D(2023, 1, 1)), et_midnight_ms(D(2024, 1, 1)))
    assert to_frame(year["results"]).equals(expected)
    assert all("otc" not in r for r in year["results"])


@pytest.mark.parametrize(
    ("ticker", "frm", "to"),
    [
        ("DENSE", "2024-03-09", "2024-03-10"),  # a weekend
        ("NOPE", "2024-03-01", "2024-03-31"),  # unknown ticker
        ("NEWCO", "2024-03-01", "2024-03-12"),  # before the listing
        ("NEWCO", "2024-03-28", "2024-04-30"),  # after the delisting
    ],
)
def test_empty_window_has_no_results_key(server, http, ticker: str, frm: str, to: str) -> None:
    r = http.get(aggs_url(server, ticker, "minute", frm, to))
    body = r.json()
    assert r.status_code == 200 and body["status"] == "OK"
    assert body["resultsCount"] == body["queryCount"] == body["count"] == 0
    assert "results" not in body and "next_url" not in body
    assert len(body["request_id"]) == 32


# -- pagination ----------------------------------------------------------------------


def test_following_next_url_returns_every_bar_once(make_server: MakeServer, http, market) -> None:
    server = make_server(page_cap=500)
    url = aggs_url(server, "DENSE", "minute", "2024-03-01", "2024-03-31")
    pages = follow(http, url, adjusted="true", sort="asc", limit=50000)
    bars = pl.concat([to_frame(p["results"]) for p in pages])
    expected = market.minute_bars("DENSE", et_midnight_ms(D(2024, 3, 1)), et_midnight_ms(D(2024, 4, 1)))
    assert bars.equals(expected)
    assert len(pages) == math.ceil(expected.height / 500) == server.stats.bars_requests
    # each next_url is the same path with `from` = one minute after the page's last bar
    for page in pages[:-1]:
        nxt = page["next_url"]
        last_t = page["results"][-1]["t"]
        assert nxt == (
            f"{server.url}/v2/aggs/ticker/DENSE/range/1/minute/{last_t + 60000}"
            f"/2024-03-31?cursor={b64('limit=500&sort=asc')}"
        )
    # and the client requested exactly those URLs, each once
    assert server.stats.targets[1:] == [target(p["next_url"]) for p in pages[:-1]]
    assert max(server.stats.requested_counts.values()) == 1


def test_explicit_limit_below_cap_is_carried_in_the_cursor(make_server: MakeServer, http) -> None:
    server = make_server(page_cap=500)
    body = http.get(
        aggs_url(server, "MID", "minute", "2024-03-01", "2024-03-31"), params={"limit": 120}
    ).json()
    assert body["resultsCount"] == 120
    assert body["next_url"].endswith("?cursor=" + b64("limit=120&sort=asc"))


def test_resending_original_url_with_cursor_is_page_one_again(make_server: MakeServer, http) -> None:
    server = make_server(page_cap=200)
    url = aggs_url(server, "DENSE", "minute", "2024-03-01", "2024-03-31")
    first = http.get(url, params={"limit": 50000}).json()
    cursor = first["next_url"].split("cursor=")[1]
    again = http.get(url, params={"limit": 50000, "cursor": cursor}).json()
    assert again["results"] == first["results"]  # the previous system's infinite loop
    proper = http.get(first["next_url"]).json()
    assert proper["results"][0]["t"] > first["results"][-1]["t"]


def test_key_never_appears_in_next_url(make_server: MakeServer) -> None:
    server = make_server(page_cap=100)
    r = requests.get(
        aggs_url(server, "DENSE", "minute", "2024-03-01", "2024-03-31"),
        params={"apiKey": KEY, "limit": 50000},
        timeout=10,
    )
    assert r.status_code == 200
    assert KEY not in r.json()["next_url"] and "apiKey" not in r.json()["next_url"]
    assert all(KEY not in t for t in server.stats.targets)


def test_cursor_does_not_carry_adjusted(make_server: MakeServer, http) -> None:
    server = make_server(page_cap=100)
    first = http.get(
        aggs_url(server, "MID", "minute", "2024-03-01", "2024-03-31"), params={"adjusted": "false"}
    ).json()
    assert first["adjusted"] is False
    # the documented uncertainty: next_url without adjusted falls back to the default
    assert http.get(first["next_url"]).json()["adjusted"] is True
    assert http.get(first["next_url"], params={"adjusted": "false"}).json()["adjusted"] is False


def test_day_pagination_and_descending_order(make_server: MakeServer, http, market) -> None:
    server = make_server(page_cap=7)
    window = (et_midnight_ms(D(2024, 1, 1)), et_midnight_ms(D(2024, 4, 1)))
    pages = follow(http, aggs_url(server, "MID", "day", "2024-01-01", "2024-03-31"))
    assert pl.concat([to_frame(p["results"]) for p in pages]).equals(market.day_bars("MID", *window))
    desc = follow(http, aggs_url(server, "MID", "minute", "2024-03-04", "2024-03-05"), sort="desc")
    bars = pl.concat([to_frame(p["results"]) for p in desc])
    expected = market.minute_bars("MID", et_midnight_ms(D(2024, 3, 4)), et_midnight_ms(D(2024, 3, 6)))
    assert bars.equals(expected.reverse())


def test_broken_next_url_does_not_advance(make_server: MakeServer, http) -> None:
    server = make_server(page_cap=100, broken_next_url={"DENSE"})
    url = aggs_url(server, "DENSE", "minute", "2024-03-01", "2024-03-31")
    first = http.get(url).json()
    assert target(first["next_url"]).startswith(target(url) + "?cursor=")
    second = http.get(first["next_url"]).json()
    assert second["results"] == first["results"]


# -- auth, entitlement, validation ---------------------------------------------------------


def test_auth_missing_unknown_header_query_and_rotation(server) -> None:
    url = aggs_url(server, "MID", "day", "2024-03-01", "2024-03-31")
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"] == "API Key was not provided"
    assert missing.json()["status"] == "ERROR" and len(missing.json()["request_id"]) == 32
    unknown = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert unknown.status_code == 401 and unknown.json()["error"] == "Unknown API Key"
    assert requests.get(url, params={"apiKey": KEY}, timeout=10).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    server.set_api_keys(["rotated"])
    assert requests.get(url, params={"apiKey": KEY}, timeout=10).status_code == 401
    assert requests.get(url, params={"apiKey": "rotated"}, timeout=10).status_code == 200


def test_history_before_plan_start_is_403(make_server: MakeServer, http) -> None:
    server = make_server(history_start=D(2020, 1, 1))
    r = http.get(aggs_url(server, "MID", "minute", "2019-12-31", "2020-01-31"))
    assert r.status_code == 403
    assert r.json()["status"] == "NOT_AUTHORIZED"
    assert r.json()["message"].startswith("Your plan doesn't include this data timeframe")
    before_ms = et_midnight_ms(D(2019, 12, 31))
    assert http.get(aggs_url(server, "MID", "minute", before_ms, "2020-01-31")).status_code == 403
    assert http.get(aggs_url(server, "MID", "minute", "2020-01-02", "2020-01-31")).status_code == 200


def test_clip_answers_a_straddling_range_with_the_entitled_bars_only(
    make_server: MakeServer, http, market: SyntheticMarket
) -> None:
    server = make_server(history_start=D(2020, 1, 1), straddle="clip")
    wholly_before = http.get(aggs_url(server, "MID", "day", "2019-06-01", "2019-12-31"))
    assert (wholly_before.status_code, wholly_before.json()["status"]) == (403, "NOT_AUTHORIZED")
    pages = follow(http, aggs_url(server, "MID", "minute", "2019-12-01", "2020-01-31"), limit=1000)
    assert len(pages) > 1  # the clip holds on the continuation pages too
    served = to_frame([bar for page in pages for bar in page.get("results", [])])
    entitled = market.minute_bars("MID", et_midnight_ms(D(2020, 1, 1)), et_midnight_ms(D(2020, 2, 1)))
    assert served.equals(entitled)  # December silently absent, January whole
    assert all(page["status"] == "OK" for page in pages)
    with pytest.raises(ValueError, match="straddle"):
        StandInServer(market, straddle="sometimes")


def test_future_dates_are_refused_as_the_api_refuses_them(make_server: MakeServer, http, market) -> None:
    """polygon-api.md, Errors: 403 NOT_AUTHORIZED for "future dates". The synthetic market
    trades every weekday for ever; the stand-in used to answer /range and grouped daily of
    2100 with bars (found by a review of the stand-in against the samples)."""
    refused = (403, "NOT_AUTHORIZED")
    machine = make_server()  # today is the machine's (US/Eastern) unless set
    for path in (
        "/v2/aggs/ticker/MID/range/1/day/2100-01-04/2100-01-08",
        "/v2/aggs/grouped/locale/us/market/stocks/2100-01-04",
    ):
        r = http.get(f"{machine.url}{path}")
        assert (r.status_code, r.json()["status"]) == refused, path
    server = make_server(today=D(2024, 3, 13))  # a Wednesday
    future = et_midnight_ms(D(2024, 3, 14))
    for url in (
        aggs_url(server, "MID", "day", "2024-03-14", "2024-03-15"),
        aggs_url(server, "MID", "minute", future, future + 3_600_000),  # epoch-ms bounds alike
        aggs_url(server, "MID", "day", "2024-03-01", "2024-03-29"),  # reaching past today: 403 by default
        f"{server.url}/v2/aggs/grouped/locale/us/market/stocks/2024-03-14",
    ):
        r = http.get(url)
        assert (r.status_code, r.json()["status"]) == refused, url
    until_today = http.get(aggs_url(server, "MID", "day", "2024-03-01", "2024-03-13")).json()
    assert until_today["resultsCount"] == 9  # today and before are answered
    grouped = http.get(f"{server.url}/v2/aggs/grouped/locale/us/market/stocks/2024-03-13").json()
    assert grouped["resultsCount"] == len(market.tickers)
    # straddle="clip": a range reaching past today gets the bars up to today only
    clip = make_server(today=D(2024, 3, 13), straddle="clip")
    served = follow(http, aggs_url(clip, "MID", "day", "2024-03-01", "2024-03-29"), limit=5000)
    bars = to_frame([bar for page in served for bar in page.get("results", [])])
    assert bars.equals(market.day_bars("MID", et_midnight_ms(D(2024, 3, 1)), future))
    assert http.get(aggs_url(clip, "MID", "day", "2024-03-14", "2024-03-29")).status_code == 403


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("1/minute/2024-03-01/2024-03-31", {"limit": 0}),
        ("1/minute/2024-03-01/2024-03-31", {"limit": 50001}),
        ("1/minute/2024-03-01/2024-03-31", {"limit": "many"}),
        ("1/minute/2024-03-01/2024-03-31", {"sort": "sideways"}),
        ("1/minute/2024-03-01/2024-03-31", {"adjusted": "maybe"}),
        ("1/minute/2024-03-01/2024-03-31", {"cursor": "!!!"}),
        ("1/hour/2024-03-01/2024-03-31", {}),
        ("1/week/2024-03-01/2024-03-31", {}),
        ("5/minute/2024-03-01/2024-03-31", {}),
        ("1/minute/2024-13-01/2024-03-31", {}),
        ("1/minute/2024-03-01/yesterday", {}),
    ],
)
def test_bad_requests_are_400(server, http, path: str, params: dict) -> None:
    r = http.get(f"{server.url}/v2/aggs/ticker/MID/range/{path}", params=params)
    assert r.status_code == 400
    assert r.json()["status"] == "ERROR" and r.json()["error"]


def test_reference_ticker_and_unknown_paths(server, http) -> None:
    alive = http.get(f"{server.url}/v3/reference/tickers/DENSE").json()["results"]
    assert alive["ticker"] == "DENSE" and alive["active"] is True and alive["type"] == "CS"
    assert alive["market_cap"] > 0 and alive["share_class_shares_outstanding"] > 0
    assert "delisted_utc" not in alive and "list_date" in alive  # a stable stand-in date when unset
    gone = http.get(f"{server.url}/v3/reference/tickers/NEWCO").json()["results"]
    assert gone["active"] is False and gone["list_date"] == "2024-03-13"
    assert gone["delisted_utc"] == "2024-03-27T00:00:00Z"  # its last session
    missing = http.get(f"{server.url}/v3/reference/tickers/NOPE")
    assert missing.status_code == 404 and missing.json() == {
        "status": "NOT_FOUND",
        "request_id": missing.json()["request_id"],
        "message": "Ticker not found.",
    }
    assert http.get(f"{server.url}/v9/nothing").status_code == 404
    assert server.stats.by_kind == {"ticker": 3, "other": 1}
    assert server.stats.bars_requests == 0


# -- transport -----------------------------------------------------------------------


def test_gzip_keep_alive_and_identity(server, http) -> None:
    url = aggs_url(server, "DENSE", "minute", "2024-03-08", "2024-03-08")
    raw = http.get(url, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert raw.raw.read(decode_content=False)[:2] == b"\x1f\x8b"
    zipped = http.get(url)
    plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert int(plain.headers["Content-Length"]) == len(plain.content)
    assert zipped.json()["results"] == plain.json()["results"]
    assert server.stats.connections == 1  # all on one keep-alive connection


def test_a_50000_bar_page_is_the_markets_first_50000_bars(server, http, market) -> None:
    # how fast such a page is served is a figure in `bench/standin.py`, not a test
    url = aggs_url(server, "DENSE", "minute", "2024-01-01", "2024-12-31")
    body = http.get(url, params={"limit": 50000}, headers={"Accept-Encoding": "identity"}).json()
    year = market.minute_bars("DENSE", et_midnight_ms(D(2024, 1, 1)), et_midnight_ms(D(2025, 1, 1)))
    assert year.height > 50000  # so the page is full and another one is due
    assert body["resultsCount"] == body["queryCount"] == body["count"] == 50000
    assert to_frame(body["results"]).equals(year.head(50000))
    next_from = year["t"][50000]  # the first bar not on this page
    assert body["next_url"].startswith(f"{server.url}/v2/aggs/ticker/DENSE/range/1/minute/{next_from}/")


def test_runtime_knobs_always_status_and_latency(server, http) -> None:
    url = aggs_url(server, "MID", "day", "2024-03-01", "2024-03-31")
    server.always_status = 500
    assert [http.get(url).status_code for _ in range(3)] == [500] * 3
    server.always_status = None
    server.latency = 0.2
    r = http.get(url)
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.2
    assert server.stats.by_status == {500: 3, 200: 1}


class VirtualClock:
    """Stands in for the `time` module of the stand-in server, whose token bucket reads only
    `time.monotonic()`: the bucket refills when a test says so, never with the machine's pace."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def bucket_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The stand-in's rate-limit clock, frozen until the test advances it."""
    clock = VirtualClock()
    monkeypatch.setattr(server_module, "time", clock)
    return clock


def statuses(session: requests.Session, url: str, key: str, times: int) -> list[int]:
    return [session.get(url, params={"apiKey": key}, timeout=10).status_code for _ in range(times)]


def test_rate_limit_answers_429_with_retry_after(server, bucket_clock: VirtualClock) -> None:
    server.rate_limit = 2.0  # burst 2, then 2 per second
    url = f"{server.url}/v3/reference/tickers/MID"
    with requests.Session() as s:
        assert statuses(s, url, KEY, 5) == [200, 200, 429, 429, 429]  # the burst, then nothing
        refused = s.get(url, params={"apiKey": KEY}, timeout=10)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "exceeded the maximum requests" in refused.json()["error"]
        bucket_clock.advance(0.5)  # half a second at 2/s: one more request
        assert statuses(s, url, KEY, 2) == [200, 429]
        bucket_clock.advance(60)  # a long pause refills no more than the burst
        assert statuses(s, url, KEY, 3) == [200, 200, 429]
        server.set_api_keys([KEY, "other"])  # the bucket is per key
        assert statuses(s, url, "other", 3) == [200, 200, 429]
        server.send_retry_after = False
        server.rate_limit = 1.0  # a new limit starts every key with a full burst
        codes = [s.get(url, params={"apiKey": KEY}, timeout=10) for _ in range(2)]
        assert [r.status_code for r in codes] == [200, 429]
        assert "Retry-After" not in codes[-1].headers
        server.rate_limit = None
        assert statuses(s, url, KEY, 3) == [200] * 3
    assert server.stats.by_status == {200: 11, 429: 8}


# -- faults ----------------------------------------------------------------------------


@pytest.fixture
def faulty(make_server: MakeServer) -> Callable[..., StandInServer]:
    def make(kind: str, **plan: object) -> StandInServer:
        return make_server(faults=FaultPlan(rate=1.0, kinds=(kind,), slow_seconds=2.0, **plan))

    return make


def test_fault_429(faulty) -> None:
    url = aggs_url(server := faulty("429"), "MID", "day", "2024-03-01", "2024-03-31")
    r = requests.get(url, params={"apiKey": KEY}, timeout=10)
    assert r.status_code == 429 and r.headers["Retry-After"] == "0"
    assert r.json()["status"] == "ERROR"
    server.faults = FaultPlan(rate=1.0, kinds=("429",), retry_after=False)
    assert "Retry-After" not in requests.get(url, params={"apiKey": KEY}, timeout=10).headers
    assert server.stats.faults == {"429": 2}


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_fault_5xx(faulty, http, kind: str) -> None:
    r = http.get(aggs_url(faulty(kind), "MID", "day", "2024-03-01", "2024-03-31"))
    assert r.status_code == int(kind)


def test_fault_reset(faulty, http) -> None:
    with pytest.raises(requests.ConnectionError):
        http.get(aggs_url(faulty("reset"), "MID", "day", "2024-03-01", "2024-03-31"))


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_fault_truncated(faulty, http, encoding: str) -> None:
    url = aggs_url(faulty("truncated"), "DENSE", "minute", "2024-03-08", "2024-03-08")
    with pytest.raises(
        (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.ConnectionError,
        )
    ):
        http.get(url, headers={"Accept-Encoding": encoding})


def test_fault_invalid_json(faulty, http) -> None:
    r = http.get(aggs_url(faulty("invalid_json"), "MID", "day", "2024-03-01", "2024-03-31"))
    assert r.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        r.json()


def test_fault_bad_shape(faulty, http) -> None:
    url = aggs_url(faulty("bad_shape"), "MID", "day", "2024-03-01", "2024-03-31")
    for _ in range(6):
        body = http.get(url).json()
        results = body["results"]
        assert body["status"] == "OK"
        assert not isinstance(results, list) or any("t" not in r for r in results)


def test_fault_slow_times_out_without_blocking_others(make_server: MakeServer, http) -> None:
    # "slow" outlasts any client timeout (until the server stops), so the client always gives
    # up first, however busy the machine is
    server = make_server(faults=FaultPlan(rate=1.0, kinds=("slow",), slow_seconds=3600.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(aggs_url(server, "MID", "day", "2024-03-01", "2024-03-31"), timeout=0.5)
    # another request is answered while the slow handler is still asleep: the slow request
    # is counted, but no answer to it was sent
    assert http.get(f"{server.url}/v3/reference/tickers/MID", timeout=10).status_code == 200
    assert server.stats.faults == {"slow": 1}
    assert server.stats.by_kind == {"aggs": 1, "ticker": 1}
    assert server.stats.by_status == {200: 1}


def test_fault_plan_is_seeded_and_partial(make_server: MakeServer, http) -> None:
    plan: dict = {"rate": 0.5, "kinds": ("500", "503"), "seed": 3}
    runs = []
    for _ in range(2):
        server = make_server(faults=FaultPlan(**plan))
        url = aggs_url(server, "MID", "day", "2024-03-01", "2024-03-31")
        runs.append([http.get(url).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 500, 503} == set(runs[0])
    with pytest.raises(ValueError):
        FaultPlan(kinds=("teapot",))


# -- command line --------------------------------------------------------------------


def test_main_serves_until_interrupted() -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polyledger",
            "serve",
            "--api-key",
            KEY,
            "--port",
            "0",
            "--tickers",
            "AAPL,MSFT",
            "--latency",
            "0.005",
            "--rate-limit",
            "50",
            "--fault-rate",
            "0",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = requests.get(f"{url}/v3/reference/tickers/MSFT", params={"apiKey": KEY}, timeout=10)
        assert r.status_code == 200 and r.json()["results"]["ticker"] == "MSFT"
        if os.name == "nt":  # Windows cannot deliver SIGINT to a child process
            proc.terminate()
            proc.wait(timeout=10)
        else:  # Ctrl-C: a clean stop
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()

"""The recorded real API responses (tests/fixtures, copied from the official clients' mocks
and the OpenAPI examples) go through the real client and decoder, replayed by vcrpy."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import vcr
import yaml
from polars.testing import assert_frame_equal
from support import FILE_COLUMNS

from polyledger.bars import bars_for_unit
from polyledger.errors import ProtocolError
from polyledger.polygon.aggs import decode_aggregates
from polyledger.polygon.client import PolygonClient, RetryPolicy
from polyledger.polygon.fetch import FetchCost, iter_pages
from polyledger.polygon.ratelimit import RateLimiter

FIXTURES = Path(__file__).parent / "fixtures"
MOCKS = FIXTURES / "api-mocks"
BASE = "https://api.massive.com"
KEY = "pk_CASSETTE_key_not_real"


@dataclass
class Fetched:
    bars: pl.DataFrame
    cost: FetchCost


def fetch_all(client, ticker, timespan, start, end, adjusted) -> Fetched:  # type: ignore[no-untyped-def]
    """Every page of a range, as one frame, and what it cost."""
    cost = FetchCost()
    pages = list(iter_pages(client, ticker, timespan, start, end, adjusted, cost))
    return Fetched(pl.concat(pages) if pages else pl.DataFrame(), cost)


def interaction(uri: str, body: str, status: int = 200) -> dict:
    return {
        "request": {"body": None, "headers": {}, "method": "GET", "uri": uri},
        "response": {
            "body": {"string": body},
            "headers": {"Content-Type": ["application/json"]},
            "status": {"code": status, "message": "OK"},
        },
    }


def cassette(tmp_path: Path, interactions: list[dict]) -> str:
    """A vcrpy cassette built from recorded bodies (no auth header is ever stored)."""
    path = tmp_path / "cassette.yaml"
    path.write_text(yaml.safe_dump({"interactions": interactions, "version": 1}), encoding="utf-8")
    return str(path)


def client() -> PolygonClient:
    return PolygonClient(KEY, base_url=BASE, limiter=RateLimiter(1000), retry=RetryPolicy(max_retries=0))


def first_page_uri(ticker: str, timespan: str, start: str, end: str) -> str:
    return (
        f"{BASE}/v2/aggs/ticker/{ticker}/range/1/{timespan}/{start}/{end}?adjusted=true&sort=asc&limit=50000"
    )


def test_recorded_daily_aggregates_download_and_keep_et_dates(tmp_path):
    body = (MOCKS / "v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04.json").read_text()
    uri = first_page_uri("AAPL", "day", "2005-04-01", "2005-04-04")
    with vcr.use_cassette(cassette(tmp_path, [interaction(uri, body)]), record_mode="none") as tape:
        fetched = fetch_all(client(), "AAPL", "day", dt.date(2005, 4, 1), dt.date(2005, 4, 4), True)
        # record_mode "none": the live request had to match the recorded URI exactly (no key in it)
        assert tape.play_count == 1
    bars = bars_for_unit(fetched.bars, "AAPL", dt.date(2005, 4, 1), dt.date(2005, 4, 4))
    assert bars["timestamp"].to_list() == [
        dt.datetime(2005, 4, 1, 5, tzinfo=dt.timezone.utc),  # 00:00 ET, EST
        dt.datetime(2005, 4, 4, 4, tzinfo=dt.timezone.utc),  # 00:00 ET, after the DST change
    ]
    assert bars["volume"].dtype == pl.Float64 and bars["volume"].to_list() == [642646396.0, 578172308.0]
    assert bars["transactions"].to_list() == [82132, 65543]
    assert bars.columns == FILE_COLUMNS


def test_recorded_paginated_response_is_followed_exactly_as_given(tmp_path):
    """The OpenAPI example carries a next_url with a cursor; it is requested verbatim."""
    first = json.loads((FIXTURES / "spec-examples/v2_aggs_ticker_range.example.json").read_text())
    next_url = first["next_url"]
    assert "cursor=" in next_url and "/1578114000000/" in next_url
    last = {
        "ticker": "AAPL",
        "queryCount": 1,
        "resultsCount": 1,
        "adjusted": True,
        "status": "OK",
        "request_id": "b2",
        "results": [dict(first["results"][1], t=1578286800000)],
    }
    uri = first_page_uri("AAPL", "day", "2020-01-01", "2020-01-10")
    interactions = [interaction(uri, json.dumps(first)), interaction(next_url, json.dumps(last))]
    with vcr.use_cassette(cassette(tmp_path, interactions), record_mode="none") as tape:
        fetched = fetch_all(client(), "AAPL", "day", dt.date(2020, 1, 1), dt.date(2020, 1, 10), True)
        assert tape.play_count == 2 and tape.all_played  # page one once, then next_url verbatim
    assert fetched.cost.requests == 2 and fetched.bars.height == 3


def test_next_url_that_does_not_advance_fails_the_unit(tmp_path):
    first = json.loads((FIXTURES / "spec-examples/v2_aggs_ticker_range.example.json").read_text())
    uri = first_page_uri("AAPL", "day", "2020-01-01", "2020-01-10")
    first["next_url"] = f"{BASE}/v2/aggs/ticker/AAPL/range/1/day/1577941200000/2020-01-10?cursor=abc"
    with vcr.use_cassette(cassette(tmp_path, [interaction(uri, json.dumps(first))]), record_mode="none"):
        with pytest.raises(ProtocolError, match="does not advance"):
            fetch_all(client(), "AAPL", "day", dt.date(2020, 1, 1), dt.date(2020, 1, 10), True)


def test_next_url_on_a_foreign_host_is_refused_before_the_key_is_sent(tmp_path):
    first = json.loads((FIXTURES / "spec-examples/v2_aggs_ticker_range.example.json").read_text())
    first["next_url"] = "https://evil.example.com/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10"
    uri = first_page_uri("AAPL", "day", "2020-01-01", "2020-01-10")
    with vcr.use_cassette(
        cassette(tmp_path, [interaction(uri, json.dumps(first))]), record_mode="none"
    ) as tape:
        with pytest.raises(ProtocolError, match="another host"):
            fetch_all(client(), "AAPL", "day", dt.date(2020, 1, 1), dt.date(2020, 1, 10), True)
        assert tape.play_count == 1


# the API's bar fields and their types, written out here (not read from the decoder's own
# schema): a field missing from a recorded bar (`n`, `otc`) is null, and `T` (the ticker, in
# the `prev` samples) is not a bar column
RECORDED_FIELDS = {
    "t": pl.Int64,
    "o": pl.Float64,
    "h": pl.Float64,
    "l": pl.Float64,
    "c": pl.Float64,
    "v": pl.Float64,
    "vw": pl.Float64,
    "n": pl.Int64,
    "otc": pl.Boolean,
}


def recorded_bars(results: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        {name: [bar.get(name) for bar in results] for name in RECORDED_FIELDS}, schema=RECORDED_FIELDS
    )


@pytest.mark.parametrize(
    "sample",
    [
        "api-mocks/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04.json",
        "api-mocks/v2/aggs/ticker/AAPL/range/1/day/2005-04-02/2005-04-04.json",
        "api-mocks/v2/aggs/ticker/AAPL/prev.json",
        "spec-examples/v2_aggs_ticker_range.example.json",
        "spec-examples/v2_aggs_ticker_prev.example.json",
    ],
)
def test_every_recorded_aggregates_shape_decodes(sample):
    """Every bar field of every recorded bar, and the envelope, come through as recorded."""
    raw = json.loads((FIXTURES / sample).read_text())
    page = decode_aggregates((FIXTURES / sample).read_bytes())
    assert_frame_equal(page.bars, recorded_bars(raw["results"]))
    assert (page.next_url, page.request_id, page.adjusted) == (
        raw.get("next_url"),
        raw["request_id"],
        raw["adjusted"],
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"ticker":"X","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"a"}',
        b'{"ticker":"X","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"a","results":null}',
        b'{"ticker":"X","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"a","results":[]}',
        b'{"ticker":"X","resultsCount":0,"adjusted":true,"status":"DELAYED","request_id":"a"}',
    ],
)
def test_documented_empty_shapes_are_empty(body):
    assert decode_aggregates(body).bars.height == 0


@pytest.mark.parametrize(
    "sample",
    [
        "api-mocks/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04.json",
        "spec-examples/v2_aggs_ticker_range.example.json",
    ],
)
def test_fast_and_general_decoders_agree_on_recorded_and_compact_bodies(sample):
    from polyledger.polygon.aggs import _decode_fast, _decode_general

    pretty = (FIXTURES / sample).read_bytes()
    compact = json.dumps(json.loads(pretty), separators=(",", ":")).encode()
    for body in (pretty, compact):
        fast, general = _decode_fast(body), _decode_general(body)
        assert fast is not None, "the fast path should take the documented shape"
        assert_frame_equal(fast.bars, general.bars)
        assert (fast.next_url, fast.request_id, fast.adjusted) == (
            general.next_url,
            general.request_id,
            general.adjusted,
        )

"""The stand-in's response styles and uncertain answers, over real HTTP: what the real API may
vary (spacing, key order, pretty printing, bars without vw/n, bars outside the asked dates,
`adjusted` in the cursor, resultsCount without results) is served on demand, seeded, and
the default stays exactly the compact body the API sends."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import requests

from polyledger.testing import StandInServer, SyntheticMarket
from polyledger.testing.market import BAR_SCHEMA, et_midnight_ms
from polyledger.testing.server import LAYOUTS, RESULT_KEYS, WITHHELD_AS, ResponseStyle

D = dt.date
MakeServer = Callable[..., StandInServer]
MARCH = ("2024-03-01", "2024-03-31")
API_ENVELOPE = ["ticker", "queryCount", "resultsCount", "adjusted", "status", "request_id", "count"]


def aggs_url(server: StandInServer, ticker: str, frm: str, to: str, timespan: str = "minute") -> str:
    return f"{server.url}/v2/aggs/ticker/{ticker}/range/1/{timespan}/{frm}/{to}"


def pages_of(http: requests.Session, url: str, **params: object) -> list[bytes]:
    """The raw bodies of every page, following next_url exactly as given."""
    bodies = [http.get(url, params=params, timeout=10).content]
    while "next_url" in json.loads(bodies[-1]):
        assert len(bodies) < 1000, "pagination does not end"
        bodies.append(http.get(json.loads(bodies[-1])["next_url"], timeout=10).content)
    return bodies


def keys_in_order(body: bytes) -> tuple[list[str], list[list[str]]]:
    """The envelope's keys and each bar's keys, in the order the body spells them."""
    envelope = json.loads(body, object_pairs_hook=list)
    bars = next((value for key, value in envelope if key == "results"), None) or []
    return [key for key, _ in envelope], [[key for key, _ in bar] for bar in bars]


def bars_of(bodies: list[bytes]) -> pl.DataFrame:
    rows = [bar for body in bodies for bar in json.loads(body).get("results") or []]
    return pl.from_dicts(rows, schema=BAR_SCHEMA) if rows else pl.DataFrame(schema=BAR_SCHEMA)


def layout_of(body: bytes) -> str:
    """Which of the LAYOUTS a body is written in, from its whitespace alone."""
    if b'\n  "' in body:
        return "pretty"
    if b'": ' in body:
        return "spaced"
    if b"\n" in body:
        return "lines"
    return "compact"


def march(market: SyntheticMarket, ticker: str) -> pl.DataFrame:
    return market.minute_bars(ticker, et_midnight_ms(D(2024, 3, 1)), et_midnight_ms(D(2024, 4, 1)))


def test_default_body_is_compact_in_the_api_key_order(make_server: MakeServer, http) -> None:
    """Other tests and the fast decoder rely on this shape: no whitespace, `},{` between
    bars, the API's key order, and an explicit default style changes nothing."""
    server = make_server(page_cap=300)
    bodies = {"implicit": http.get(aggs_url(server, "DENSE", *MARCH)).content}
    server.style = ResponseStyle()
    bodies["explicit"] = http.get(aggs_url(server, "DENSE", *MARCH)).content
    body = bodies["implicit"]
    assert b" " not in body and b"\n" not in body and b"},{" in body
    envelope, bars = keys_in_order(body)
    assert envelope == [*API_ENVELOPE, "next_url", "results"]
    assert len(bars) == 300
    assert all(keys == [k for k in RESULT_KEYS if k in keys] for keys in bars)  # in the API's order
    request_id = json.loads(body)["request_id"].encode()
    other_id = json.loads(bodies["explicit"])["request_id"].encode()
    assert bodies["explicit"].replace(other_id, request_id) == body


@pytest.mark.parametrize("layout", [*LAYOUTS, "mixed"])
def test_every_layout_serves_the_same_bars(make_server: MakeServer, http, market, layout: str) -> None:
    style = ResponseStyle(layout=layout, shuffle_keys=True, missing_fields=0.1, seed=4)
    server = make_server(page_cap=1500, style=style)
    bodies = pages_of(http, aggs_url(server, "DENSE", *MARCH))
    assert len(bodies) >= 10
    assert bars_of(bodies).equals(style.strip("DENSE", march(market, "DENSE")))
    seen = [layout_of(body) for body in bodies]
    if layout == "mixed":
        assert set(seen) == set(LAYOUTS), seen  # seeded: every layout among a dozen pages
    else:
        assert set(seen) == {layout}
    if layout == "lines":  # one bar per line, between the array's own two lines
        assert all(body.count(b"\n") == len(json.loads(body)["results"]) + 1 for body in bodies)


def test_shuffled_keys_vary_and_are_reproducible(make_server: MakeServer, http) -> None:
    server = make_server(page_cap=200, style=ResponseStyle(shuffle_keys=True, seed=9))
    url = aggs_url(server, "DENSE", *MARCH)
    first, again = http.get(url).content, http.get(url).content
    envelope, bars = keys_in_order(first)
    assert sorted(envelope) == sorted([*API_ENVELOPE, "next_url", "results"])
    assert envelope != [*API_ENVELOPE, "next_url", "results"]
    assert len({tuple(keys) for keys in bars}) > 20  # bars differ from one another
    assert keys_in_order(again) == (envelope, bars)  # same request, same order
    plain = make_server(page_cap=200)
    assert bars_of([first]).equals(bars_of([http.get(aggs_url(plain, "DENSE", *MARCH)).content]))


def test_missing_fields_follow_lacks_and_otc_appears_only_when_true(
    make_server: MakeServer, http, market
) -> None:
    style = ResponseStyle(missing_fields=0.25, seed=2)
    server = make_server(style=style)
    body = http.get(aggs_url(server, "DENSE", *MARCH), params={"limit": 50_000}).content
    assert b" " not in body and b"},{" in body  # still the compact shape: only fields go
    bars = json.loads(body)["results"]
    truth = march(market, "DENSE").with_columns(
        no_vw=style.lacks("DENSE", "vw", pl.col("t")), no_n=style.lacks("DENSE", "n", pl.col("t"))
    )
    assert [("vw" not in bar, "n" not in bar) for bar in bars] == truth.select("no_vw", "no_n").rows()
    assert 0.15 < truth["no_vw"].mean() < 0.35 and 0.15 < truth["no_n"].mean() < 0.35  # type: ignore[operator]
    assert truth.filter(pl.col("no_vw") != pl.col("no_n")).height > 0  # independent of each other
    assert all({"t", "o", "h", "l", "c", "v"} <= set(bar) for bar in bars)
    assert [bar.get("otc") for bar in bars if "otc" in bar] == [True] * int(truth["otc"].sum())
    assert truth["otc"].sum() > 0  # the market has a few OTC bars in a dense month


def test_stray_bars_surround_the_asked_dates(make_server: MakeServer, http, market) -> None:
    server = make_server(page_cap=2000, style=ResponseStyle(stray_before=3, stray_after=2))
    bodies = pages_of(http, aggs_url(server, "DENSE", *MARCH))
    pages = [bars_of([body]) for body in bodies]
    start, end = et_midnight_ms(D(2024, 3, 1)), et_midnight_ms(D(2024, 4, 1))
    before = market.minute_bars("DENSE", start - 5 * 86_400_000, start).tail(3)
    after = market.minute_bars("DENSE", end, end + 5 * 86_400_000).head(2)
    assert pages[0].head(3).equals(before) and pages[-1].tail(2).equals(after)
    assert json.loads(bodies[0])["resultsCount"] == pages[0].height == 2003
    inside = pl.concat(pages).slice(3, sum(p.height for p in pages) - 5)
    assert inside.equals(march(market, "DENSE"))  # continuation pages carry no strays
    # a window with no bars before it in reach (NEWCO lists on 2024-03-13) gets none
    listed = bars_of(pages_of(http, aggs_url(server, "NEWCO", "2024-03-13", "2024-03-14")))
    assert listed.get_column("t").min() >= et_midnight_ms(D(2024, 3, 13))  # type: ignore[operator]


@pytest.mark.parametrize("keeps", [False, True])
def test_cursor_carries_adjusted_only_when_told(make_server: MakeServer, http, keeps: bool) -> None:
    """polygon-api.md leaves open whether adjusted=false survives in the cursor: the stand-in
    plays either answer (by default it does not, as test_server checks)."""
    server = make_server(page_cap=100, cursor_keeps_adjusted=keeps)
    first = http.get(aggs_url(server, "MID", *MARCH), params={"adjusted": "false"}).json()
    cursor = first["next_url"].split("cursor=")[1]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert ("adjusted=false" in decoded) is keeps
    assert http.get(first["next_url"]).json()["adjusted"] is (not keeps)
    assert http.get(first["next_url"], params={"adjusted": "false"}).json()["adjusted"] is False


@pytest.mark.parametrize("withheld_as", WITHHELD_AS)
def test_withheld_results_promise_bars_they_do_not_send(
    make_server: MakeServer, http, withheld_as: str
) -> None:
    server = make_server(withhold_results={"DENSE"}, withheld_as=withheld_as)
    body = http.get(aggs_url(server, "DENSE", *MARCH)).json()
    assert body["status"] == "OK" and body["resultsCount"] > 0
    assert body.get("results", "absent") == {"absent": "absent", "null": None, "empty": []}[withheld_as]
    weekend = http.get(aggs_url(server, "DENSE", "2024-03-09", "2024-03-10")).json()
    assert weekend["resultsCount"] == 0 and "results" not in weekend  # a clean empty stays clean
    assert len(http.get(aggs_url(server, "MID", *MARCH)).json()["results"]) > 0  # others unaffected


@pytest.mark.parametrize(
    "knobs",
    [
        {"style": {"layout": "yaml"}},
        {"style": {"missing_fields": 1.5}},
        {"style": {"stray_before": -1}},
        {"withheld_as": "zero"},
    ],
)
def test_unknown_style_values_are_refused(market: SyntheticMarket, knobs: dict) -> None:
    with pytest.raises(ValueError):
        style = ResponseStyle(**knobs.pop("style", {}))
        StandInServer(market, style=style, **knobs)


def test_the_stand_in_imports_no_production_code() -> None:
    """A stand-in that borrowed the client's code could agree with it while both are wrong."""
    testing = Path(__file__).resolve().parents[2] / "polyledger" / "testing"
    for name in ("server.py", "market.py"):
        tree = ast.parse((testing / name).read_text(encoding="utf-8"))
        modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        modules += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        production = [
            m for m in modules if m.startswith("polyledger") and not m.startswith("polyledger.testing")
        ]
        assert production == [], (name, production)

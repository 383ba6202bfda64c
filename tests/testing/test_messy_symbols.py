"""The stand-in is as messy as the real API about symbols and identities
(/work/shared/docs/polygon-api.md, "Symbols and identities", "Reference data for the
universe"): a reused symbol answers two companies' bars (and stray bars between them) in
one /range answer, a rename keeps the company's identifiers under a new symbol, inactive
names may lack FIGIs, and symbols are case-sensitive. Over real HTTP, on messy_listings().
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import requests

from polyledger.testing import Listing, StandInServer, SyntheticMarket, messy_listings
from polyledger.testing.market import BAR_SCHEMA, et_date, et_midnight_ms

D = dt.date
KEY = "demo-key"  # the key conftest's `http` session sends
FIXTURES = Path(__file__).parents[1] / "fixtures"
ECHO_A = (D(2019, 1, 2), D(2019, 9, 18))  # Echo Acoustics, delisted
ECHO_GAP = (D(2019, 9, 23), D(2019, 9, 27))  # bars of nobody the reference data knows
ECHO_B = D(2021, 3, 1)  # Echo Biotherapeutics, listed since
RENAME = D(2022, 6, 9)  # FACE's last session is the day before; MTVS from here on
ACTIVE_NOW = ["ABCPA", "ABCpA", "BRK.A", "ECHO", "MTVS", "SHOP"]  # byte order: "P" (0x50) < "p" (0x70)


@pytest.fixture(scope="module")
def messy() -> SyntheticMarket:
    return SyntheticMarket(messy_listings(), seed=5)


@pytest.fixture(scope="module")
def standin(messy: SyntheticMarket) -> Iterator[StandInServer]:
    with StandInServer(messy, api_keys=(KEY,)) as server:
        yield server


def get(http: requests.Session, server: StandInServer, path: str, **params: object) -> dict:
    r = http.get(f"{server.url}{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def walk(http: requests.Session, server: StandInServer, path: str, **params: object) -> list[dict]:
    """Every result of every page, following next_url as given."""
    body = get(http, server, path, **params)
    rows = list(body.get("results", []))
    for _ in range(200):
        if "next_url" not in body:
            return rows
        r = http.get(body["next_url"], timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body.get("results", [])
    raise AssertionError("pagination does not end")


def listed(http, server, **params: object) -> list[str]:
    return [r["ticker"] for r in walk(http, server, "/v3/reference/tickers", **params)]


def range_bars(http, server, ticker: str, timespan: str, frm: str, to: str, limit: int) -> pl.DataFrame:
    path = f"/v2/aggs/ticker/{ticker}/range/1/{timespan}/{frm}/{to}"
    rows = walk(http, server, path, limit=limit, adjusted="false")
    frame = pl.from_dicts(rows, schema=BAR_SCHEMA) if rows else pl.DataFrame(schema=BAR_SCHEMA)
    return frame.with_columns(d=pl.Series([et_date(t) for t in frame["t"]], dtype=pl.Date))


def alone(listing: Listing, timespan: str, frm: D, to: D) -> pl.DataFrame:
    """The listing's bars in a market of its own (same seed): the truth for its window."""
    market = SyntheticMarket([listing], seed=5)
    return market.bars(
        timespan, listing.ticker, et_midnight_ms(frm), et_midnight_ms(to + dt.timedelta(days=1))
    )


def events(http, server, identifier: str, **params: object) -> requests.Response:
    return http.get(f"{server.url}/vX/reference/tickers/{identifier}/events", params=params, timeout=10)


def identity(row: dict) -> tuple:
    return row["cik"], row.get("composite_figi"), row.get("share_class_figi"), row["name"]


# -- a reused symbol ------------------------------------------------------------------------


@pytest.mark.parametrize(("timespan", "limit"), [("day", 120), ("minute", 5000)])
def test_a_reused_symbol_answers_both_companies_and_the_bars_between(
    http, standin, timespan: str, limit: int
) -> None:
    served = range_bars(http, standin, "ECHO", timespan, "2018-06-01", "2021-06-30", limit)
    first, gap, second = (listing for listing in messy_listings() if listing.ticker == "ECHO")
    in_a = served.filter(pl.col("d") <= ECHO_A[1])
    in_gap = served.filter(pl.col("d").is_between(*ECHO_GAP))
    in_b = served.filter(pl.col("d") >= ECHO_B)
    # every bar is in one of the three windows, and each window's bars are exactly its listing's
    assert in_a.height + in_gap.height + in_b.height == served.height
    assert in_a["d"].min() >= ECHO_A[0] and in_a.height > 100
    assert in_b.height > 50
    assert in_a.drop("d").equals(alone(first, timespan, D(2018, 6, 1), D(2021, 6, 30)))
    assert in_gap.drop("d").equals(alone(gap, timespan, D(2018, 6, 1), D(2021, 6, 30)))
    assert in_b.drop("d").equals(alone(second, timespan, D(2018, 6, 1), D(2021, 6, 30)))
    # a handful of sparse bars on a few days between the two companies
    assert 1 <= in_gap["d"].n_unique() <= 10 and in_gap.height <= 20
    # two companies: two price levels, nothing in the answer tells them apart but the dates
    assert in_a["c"].median() != pytest.approx(in_b["c"].median(), rel=0.05)


def test_a_reused_symbol_is_two_companies_in_the_reference_data(http, standin) -> None:
    (b,) = get(http, standin, "/v3/reference/tickers", ticker="ECHO")["results"]
    (a,) = get(http, standin, "/v3/reference/tickers", ticker="ECHO", active="false")["results"]
    assert (a["name"], a["active"], a["delisted_utc"]) == (
        "Echo Acoustics Corp.",
        False,
        "2019-09-18T00:00:00Z",
    )
    assert (b["name"], b["active"]) == ("Echo Biotherapeutics Inc.", True) and "delisted_utc" not in b
    assert all(x != y for x, y in zip(identity(a), identity(b), strict=True))  # nothing shared
    # details: now the holder; on a date the listing of that date, else the last one before it
    now = get(http, standin, "/v3/reference/tickers/ECHO")["results"]
    assert (now["list_date"], now["cik"], now["active"]) == ("2021-03-01", b["cik"], True)
    then = get(http, standin, "/v3/reference/tickers/ECHO", date="2019-05-01")["results"]
    assert (then["list_date"], then["cik"], then["active"]) == ("2019-01-02", a["cik"], True)
    assert "delisted_utc" not in then
    between = get(http, standin, "/v3/reference/tickers/ECHO", date="2020-06-03")["results"]
    assert (between["cik"], between["active"], between["delisted_utc"]) == (
        a["cik"],
        False,
        a["delisted_utc"],
    )
    before = http.get(f"{standin.url}/v3/reference/tickers/ECHO", params={"date": "2018-12-31"}, timeout=10)
    assert before.status_code == 404 and before.json()["status"] == "NOT_FOUND"
    # in the gap nobody lists ECHO as active, the delisted company as inactive
    assert "ECHO" not in listed(http, standin, date="2020-06-03")
    assert listed(http, standin, date="2020-06-03", active="false") == ["ECHO"]


# -- a rename -------------------------------------------------------------------------------


def test_a_renamed_symbol_leaves_the_list_without_delisted_utc(http, standin) -> None:
    assert listed(http, standin) == ACTIVE_NOW  # FACE is not in the active pass now ...
    assert "FACE" not in listed(http, standin, active="false")  # ... nor in the inactive one
    assert listed(http, standin, active="false") == ["ECHO", "GONE"]
    # before the rename FACE is listed, active, and MTVS is not listed yet
    past = walk(http, standin, "/v3/reference/tickers", date="2021-06-01")
    face = next(r for r in past if r["ticker"] == "FACE")
    assert face["active"] is True and "delisted_utc" not in face and "MTVS" not in [r["ticker"] for r in past]
    assert "FACE" not in listed(http, standin, date="2023-01-03", active="false")
    details = get(http, standin, "/v3/reference/tickers/FACE", date="2021-06-01")["results"]
    assert (details["list_date"], details["active"]) == ("2019-01-02", True) and "delisted_utc" not in details
    gone = get(http, standin, "/v3/reference/tickers/FACE")["results"]
    assert gone["active"] is False and "delisted_utc" not in gone  # no delisting: a rename
    mtvs = get(http, standin, "/v3/reference/tickers/MTVS")["results"]
    # the company keeps its identifiers; the symbol and the name change
    assert (mtvs["cik"], mtvs["composite_figi"], mtvs["share_class_figi"]) == (
        details["cik"],
        details["composite_figi"],
        details["share_class_figi"],
    )
    assert mtvs["name"] != details["name"] and mtvs["list_date"] == RENAME.isoformat()


def test_each_symbol_of_a_renamed_company_has_its_own_bars_only(http, standin) -> None:
    face = range_bars(http, standin, "FACE", "day", "2022-01-03", "2022-12-30", 1000)
    mtvs = range_bars(http, standin, "MTVS", "day", "2022-01-03", "2022-12-30", 1000)
    assert face["d"].max() == RENAME - dt.timedelta(days=1) and face["d"].min() == D(2022, 1, 3)
    assert mtvs["d"].min() == RENAME and mtvs.height > 100
    # one company: its bars run on under the new symbol, as if it had never been renamed
    unrenamed = alone(Listing("FACE", bars_per_day=20, company="facet"), "day", RENAME, D(2022, 12, 30))
    assert mtvs.drop("d").equals(unrenamed)


def test_events_list_every_symbol_of_the_company_holding_the_id_now(http, standin) -> None:
    # MTVS's change dated two days late, on a Saturday (its first session is 06-09), as the
    # recorded answer dates FB -> META (2022-06-11; the OpenAPI example says 06-09)
    expected = [
        {"ticker_change": {"ticker": "MTVS"}, "type": "ticker_change", "date": "2022-06-11"},
        {"ticker_change": {"ticker": "FACE"}, "type": "ticker_change", "date": "2019-01-02"},
    ]
    by_ticker = events(http, standin, "MTVS")
    assert by_ticker.status_code == 200
    body = by_ticker.json()
    sample = json.loads(
        (FIXTURES / "api-mocks/vX/reference/tickers/META/events&types=ticker_change.json").read_text()
    )
    assert set(body) == set(sample) and set(body["results"]) == set(sample["results"])
    assert sample["results"]["events"][0]["date"] == "2022-06-11"
    results = body["results"]
    assert results["events"] == expected  # newest first
    assert results["name"] == "Metaverse Facet Platforms Inc. Class A Common Stock"
    figi = results["composite_figi"]
    assert events(http, standin, figi).json()["results"] == results  # by composite FIGI: the same
    assert events(http, standin, "MTVS", types="ticker_change").json()["results"] == results
    # a symbol answers for the company holding it now: ECHO is Echo Biotherapeutics only
    echo = events(http, standin, "ECHO").json()["results"]
    assert echo["events"] == [
        {"ticker_change": {"ticker": "ECHO"}, "type": "ticker_change", "date": "2021-03-01"}
    ]
    assert echo["name"] == "Echo Biotherapeutics Inc."
    # a symbol nobody holds now (renamed away, delisted) is unknown
    for gone in ("FACE", "GONE", "NOPE"):
        r = events(http, standin, gone)
        assert r.status_code == 404 and r.json()["status"] == "NOT_FOUND", gone
    assert standin.stats.by_kind["events"] >= 7


# -- identifiers and symbols ----------------------------------------------------------------


def test_an_inactive_name_can_lack_figis(http, standin) -> None:
    (gone,) = get(http, standin, "/v3/reference/tickers", ticker="GONE", active="false")["results"]
    recorded = json.loads((FIXTURES / "api-mocks/v3/reference/tickers.json").read_text())["results"][0]
    assert set(gone) == set(recorded) - {"composite_figi", "share_class_figi"} | {"delisted_utc"}
    assert gone["delisted_utc"] == "2021-12-31T00:00:00Z" and gone["cik"]
    details = get(http, standin, "/v3/reference/tickers/GONE")["results"]
    assert "composite_figi" not in details and "share_class_figi" not in details
    others = walk(http, standin, "/v3/reference/tickers")
    assert all(r["composite_figi"].startswith("BBG") and r["share_class_figi"] for r in others)


def test_symbols_are_case_sensitive_and_sorted_by_byte(http, standin) -> None:
    assert listed(http, standin, order="desc", limit=2) == ACTIVE_NOW[::-1]
    assert listed(http, standin, **{"ticker.gte": "ABCa"}) == ["ABCpA", "BRK.A", "ECHO", "MTVS", "SHOP"]
    assert listed(http, standin, **{"ticker.lt": "ABCa"}) == ["ABCPA"]
    assert listed(http, standin, ticker="ABCpA") == ["ABCpA"] and listed(http, standin, ticker="abcpa") == []
    pfd = get(http, standin, "/v3/reference/tickers/ABCpA")["results"]
    cs = get(http, standin, "/v3/reference/tickers/ABCPA")["results"]
    assert (pfd["ticker"], pfd["type"], cs["ticker"], cs["type"]) == ("ABCpA", "PFD", "ABCPA", "CS")
    assert pfd["composite_figi"] != cs["composite_figi"] and pfd["cik"] != cs["cik"]
    assert http.get(f"{standin.url}/v3/reference/tickers/ABCPa", timeout=10).status_code == 404
    assert get(http, standin, "/v3/reference/tickers/BRK.A")["results"]["ticker"] == "BRK.A"
    bars = {
        t: range_bars(http, standin, t, "minute", "2024-03-04", "2024-03-08", 25) for t in ("ABCpA", "ABCPA")
    }
    assert bars["ABCpA"].height > 25 and not bars["ABCpA"].equals(bars["ABCPA"])  # paged, and apart
    dotted = range_bars(http, standin, "BRK.A", "minute", "2024-03-04", "2024-03-08", 25)
    assert dotted.height > 25 and not dotted.equals(bars["ABCPA"])


def test_a_symbol_delisted_twice_pages_through_both_listings_once(http) -> None:
    market = SyntheticMarket(
        [
            Listing("DUP", list_date=D(2019, 1, 2), delist_date=D(2019, 6, 28), company="first"),
            Listing("DUP", list_date=D(2020, 1, 2), delist_date=D(2020, 6, 30), company="second"),
            Listing("ZED", delist_date=D(2021, 6, 30)),
        ],
        seed=5,
    )
    with StandInServer(market, api_keys=(KEY,)) as server:
        rows = walk(http, server, "/v3/reference/tickers", active="false", limit=1)
    assert [(r["ticker"], r["delisted_utc"][:10]) for r in rows] == [
        ("DUP", "2019-06-28"),
        ("DUP", "2020-06-30"),
        ("ZED", "2021-06-30"),
    ]
    assert rows[0]["cik"] != rows[1]["cik"]


# -- the market's own rules -----------------------------------------------------------------


def test_listings_of_a_symbol_must_not_overlap_and_a_rename_needs_a_successor() -> None:
    with pytest.raises(ValueError, match="listings of X overlap"):
        SyntheticMarket([Listing("X", delist_date=D(2020, 1, 3)), Listing("X", list_date=D(2020, 1, 3))])
    with pytest.raises(ValueError, match="listings of X overlap"):
        SyntheticMarket([Listing("X"), Listing("X", list_date=D(2020, 1, 3))])
    with pytest.raises(ValueError, match="no later listing of the same company"):
        SyntheticMarket(
            [Listing("X", delist_date=D(2020, 1, 3), renamed=True), Listing("Y", list_date=D(2020, 1, 6))]
        )
    with pytest.raises(ValueError, match="needs its last session"):
        Listing("X", renamed=True)
    twice = SyntheticMarket([Listing("X"), Listing("X")])  # an identical repeat is one listing
    assert len(twice.listings_of("X")) == 1


def test_a_symbols_only_listing_keeps_the_key_of_its_ticker(messy: SyntheticMarket) -> None:
    # markets without reused symbols get the bars, FIGIs and ciks they always had
    lone = SyntheticMarket([Listing("BRK.A"), Listing("ECHO", list_date=D(2019, 1, 2))], seed=5)
    assert lone.listing_key(lone.listings_of("ECHO")[0]) == lone.ticker_key("ECHO")
    assert messy.listing_key(messy.listings_of("BRK.A")[0]) == messy.ticker_key("BRK.A")
    echo = messy.listings_of("ECHO")
    assert len({messy.listing_key(x) for x in echo}) == 3 and messy.ticker_key("ECHO") not in {
        messy.listing_key(x) for x in echo
    }
    face, mtvs = messy.listings_of("FACE")[0], messy.listings_of("MTVS")[0]
    assert messy.listing_key(face) == messy.listing_key(mtvs)


# -- a split listed on two dates ---------------------------------------------------------------


def test_a_split_is_listed_on_two_dates_as_the_recorded_answer_lists_shopifys(http, standin) -> None:
    """Both splits endpoints list SHOP's one 10-for-1 split on the recorded answer's two dates
    (2022-06-29, 2022-06-22; newest first), each a record of its own; its raw prices move
    once, at the open of 2022-06-29."""
    recorded = json.loads((FIXTURES / "api-mocks/v3/reference/splits.json").read_text(encoding="utf-8"))
    keys = ("execution_date", "split_from", "split_to", "ticker")
    sample = [{k: row[k] for k in keys} for row in recorded["results"] if row["ticker"] == "SHOP"]
    for path in ("/v3/reference/splits", "/stocks/v1/splits"):
        served = walk(http, standin, path, ticker="SHOP")
        assert [{k: row[k] for k in keys} for row in served] == sample, path
        assert len({row["id"] for row in served}) == 2
    bars = range_bars(http, standin, "SHOP", "day", "2022-06-15", "2022-07-06", 50)
    moves = bars.select("d", (pl.col("o") / pl.col("c").shift()).alias("move")).drop_nulls()
    assert moves.filter(pl.col("move") < 0.5).get_column("d").to_list() == [D(2022, 6, 29)]

"""Pagination of one unit's bars against a scripted client: the first request's parameters,
next_url followed verbatim, what is counted, and every guard that stops a page loop or a
mixed adjusted/raw answer."""

from __future__ import annotations

import datetime as dt

import orjson
import polars as pl
import pytest
from support import ScriptedClient

import polyledger.polygon.fetch as fetch
from polyledger.errors import FatalRunError, NotEntitled, PermanentError, ProtocolError
from polyledger.polygon.aggs import AggregatesPage
from polyledger.polygon.fetch import (
    EndpointNotFound,
    FetchCost,
    _check_progress,
    _page_start,
    aggregates_url,
    iter_pages,
)

BASE = "https://api.test"
FIRST = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-01/2024-01-31"
D = dt.date


def cursor(start_ms: int) -> str:
    # as the API's: `from` moved, `to` kept as asked (docs/api-samples: v2_aggs_ticker_range)
    return f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/{start_ms}/2024-01-31?cursor=c{start_ms}"


def page(
    times: list[int], next_url: str | None = None, adjusted: bool | None = True, **extra: object
) -> bytes:
    body: dict = {"status": "OK", "resultsCount": len(times), "request_id": "rq", **extra}
    body["results"] = [{"t": t, "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0} for t in times]
    if adjusted is not None:
        body["adjusted"] = adjusted
    if next_url is not None:
        body["next_url"] = next_url
    return orjson.dumps(body)


def pages_of(
    client: ScriptedClient, adjusted: bool = True, spent: FetchCost | None = None
) -> list[list[int]]:
    spent = spent if spent is not None else FetchCost()
    frames = iter_pages(client, "AAPL", "minute", D(2024, 1, 1), D(2024, 1, 31), adjusted, spent)  # type: ignore[arg-type]
    return [frame.get_column("t").to_list() for frame in frames]


def raw_page(times: list[int], next_url: str | None) -> AggregatesPage:
    return AggregatesPage(pl.DataFrame({"t": times}, schema={"t": pl.Int64}), next_url, None, True)


def test_the_aggregates_url_names_ticker_timespan_and_dates():
    assert aggregates_url(BASE, "BRK.B", "day", D(2024, 1, 2), D(2024, 12, 31)) == (
        f"{BASE}/v2/aggs/ticker/BRK.B/range/1/day/2024-01-02/2024-12-31"
    )


@pytest.mark.parametrize(
    ("url", "start"),
    [
        (cursor(1704205800000), 1704205800000),
        (FIRST, None),
        (f"{BASE}/v3/other/1704205800000", None),
        (f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/17042/2024-01-31?x=1", 17042),
    ],
)
def test_page_start_reads_the_epoch_ms_from_only(url, start):
    assert _page_start(url) == start


@pytest.mark.parametrize(("adjusted", "text"), [(True, "true"), (False, "false")])
def test_pages_are_asked_once_then_next_url_is_followed_verbatim(adjusted, text):
    second = cursor(300)
    client = ScriptedClient(
        [page([100, 200], second, adjusted=adjusted), page([300, 400], adjusted=adjusted)]
    )
    assert pages_of(client, adjusted) == [[100, 200], [300, 400]]
    assert client.calls == [(FIRST, {"adjusted": text, "sort": "asc", "limit": "50000"}), (second, None)]


def test_an_empty_last_page_yields_nothing():
    client = ScriptedClient([page([])])
    assert pages_of(client) == []


def test_what_is_spent_is_counted_page_by_page():
    first, second = page([100], cursor(101)), page([200], request_id=None)
    spent = FetchCost()
    frames = iter_pages(
        ScriptedClient([first, second], tries=2), "AAPL", "minute", D(2024, 1, 1), D(2024, 1, 31), True, spent
    )  # type: ignore[arg-type]
    next(frames)
    assert (spent.requests, spent.bytes, spent.request_id) == (2, len(first), "rq")
    list(frames)
    # a page without its own request id takes the response header's
    assert (spent.requests, spent.bytes, spent.request_id) == (4, len(first) + len(second), "header-id")


def test_a_first_page_with_the_other_adjustment_is_refused_at_once():
    client = ScriptedClient([page([100], adjusted=False)])
    with pytest.raises(ProtocolError, match="^asked for adjusted=True but got adjusted=False$") as raised:
        pages_of(client, adjusted=True)
    assert raised.value.error_class == "adjusted_mismatch" and len(client.calls) == 1


def test_a_cursor_that_lost_adjusted_is_asked_again_saying_it():
    second = cursor(101)
    client = ScriptedClient(
        [
            page([100], second, adjusted=False),
            page([200], adjusted=True),  # the cursor forgot: adjusted bars
            page([200], adjusted=False),  # asked again with adjusted=false
        ]
    )
    assert pages_of(client, adjusted=False) == [[100], [200]]
    assert client.calls[1:] == [(second, None), (second, {"adjusted": "false"})]


def test_once_a_cursor_lost_adjusted_every_following_page_says_it_at_once():
    """An --unadjusted unit whose cursor drops `adjusted` costs one request more in all,
    not one more per page."""
    second, third = cursor(101), cursor(201)
    client = ScriptedClient(
        [
            page([100], second, adjusted=False),
            page([200], third, adjusted=True),  # the cursor forgot: adjusted bars
            page([200], third, adjusted=False),  # asked again with adjusted=false
            page([300], cursor(301), adjusted=False),  # asked with adjusted=false at once
            page([400], adjusted=False),
        ]
    )
    assert pages_of(client, adjusted=False) == [[100], [200], [300], [400]]
    assert client.calls[1:] == [
        (second, None),
        (second, {"adjusted": "false"}),
        (third, {"adjusted": "false"}),
        (cursor(301), {"adjusted": "false"}),
    ]


def test_a_page_asked_with_adjusted_that_still_differs_is_refused_at_once():
    second, third = cursor(101), cursor(201)
    client = ScriptedClient(
        [
            page([100], second, adjusted=False),
            page([200], third, adjusted=True),
            page([200], third, adjusted=False),
            page([300], adjusted=True),  # adjusted=false was sent, adjusted bars came back
        ]
    )
    with pytest.raises(ProtocolError, match="^asked for adjusted=False but got adjusted=True$"):
        pages_of(client, adjusted=False)
    assert len(client.calls) == 4


def test_a_cursor_that_stays_wrong_is_refused():
    second = cursor(101)
    client = ScriptedClient([page([100], second), page([200], adjusted=False), page([200], adjusted=False)])
    with pytest.raises(ProtocolError, match="adjusted=True but got adjusted=False"):
        pages_of(client, adjusted=True)
    assert client.calls[2] == (second, {"adjusted": "true"})


def test_a_page_that_does_not_say_adjusted_is_taken():
    client = ScriptedClient([page([100], cursor(101), adjusted=None), page([200], adjusted=None)])
    assert pages_of(client) == [[100], [200]]
    assert len(client.calls) == 2


def test_a_404_means_the_endpoint_is_wrong_for_every_unit():
    client = ScriptedClient([PermanentError("not found", error_class="not_found", http_status=404)])
    with pytest.raises(
        EndpointNotFound, match=f"^the API has no aggregates endpoint at {BASE} \\(404\\): check --base-url$"
    ) as raised:
        pages_of(client)
    assert isinstance(raised.value, FatalRunError) and raised.value.error_class == "endpoint_not_found"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_other_permanent_errors_stay_the_units_own():
    denied = NotEntitled("not entitled", http_status=403)
    with pytest.raises(NotEntitled) as raised:
        pages_of(ScriptedClient([denied]))
    assert raised.value is denied


@pytest.mark.parametrize(
    ("next_url", "reason"),
    [
        (cursor(200), "^next_url does not advance$"),  # == the last bar
        (cursor(150), "^next_url does not advance$"),  # behind the last bar
        (
            "https://api.test/v2/aggs/ticker/AAPL/range/1/minute/2024-01-02/2024-01-31?cursor=x",
            "^next_url has no epoch-ms start to follow$",
        ),
        ("https://api.test/v2/other?cursor=x", "^next_url has no epoch-ms start to follow$"),
    ],
)
def test_a_next_url_that_does_not_move_past_the_page_fails_the_unit(next_url, reason):
    client = ScriptedClient([page([100, 200], next_url)])
    with pytest.raises(ProtocolError, match=reason) as raised:
        pages_of(client)
    assert raised.value.error_class == "pagination" and len(client.calls) == 1


def test_a_page_with_no_bars_that_says_there_is_more_fails_the_unit():
    client = ScriptedClient([page([], cursor(100))])
    with pytest.raises(ProtocolError, match="^a page with no bars says there is more$") as raised:
        pages_of(client)
    assert raised.value.error_class == "pagination"


def test_the_next_url_just_past_the_last_bar_is_followed():
    client = ScriptedClient([page([100, 200], cursor(201)), page([201])])
    assert pages_of(client) == [[100, 200], [201]]


def test_a_cursor_must_start_after_the_current_pages_start():
    here = cursor(1000)
    same_start = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/1000/2024-01-31?cursor=other"
    for target, ok in ((same_start, False), (cursor(999), False), (cursor(1001), True)):
        page_ = raw_page([10], target)  # bars before `from`: only the start check catches it
        if ok:
            _check_progress(here, page_, set(), 2)
        else:
            with pytest.raises(ProtocolError, match="does not advance"):
                _check_progress(here, page_, set(), 2)


def test_a_next_url_seen_before_or_equal_to_this_one_is_refused():
    seen_before = cursor(5000)
    with pytest.raises(ProtocolError, match="does not advance"):
        _check_progress(FIRST, raw_page([10], seen_before), {seen_before}, 2)
    _check_progress(FIRST, raw_page([10], seen_before), {cursor(4000)}, 2)


def test_a_page_equal_to_its_own_url_is_refused_even_without_a_start():
    odd = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/7000/x"
    _check_progress(f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/abc/x", raw_page([10], odd), set(), 2)
    with pytest.raises(ProtocolError, match="does not advance"):
        _check_progress(odd, raw_page([10], odd), set(), 2)


def test_the_page_limit_stops_a_runaway_server(monkeypatch):
    monkeypatch.setattr(fetch, "MAX_PAGES", 3)
    client = ScriptedClient([page([t], cursor(t + 1)) for t in (100, 200, 300, 400)])
    with pytest.raises(ProtocolError, match="^more than 3 pages for one unit$") as raised:
        pages_of(client)
    assert raised.value.error_class == "pagination" and len(client.calls) == 3


def test_the_page_limit_is_a_thousand():
    assert fetch.MAX_PAGES == 1_000 and fetch.PAGE_LIMIT == 50_000
    with pytest.raises(ProtocolError, match="more than 1000 pages"):
        _check_progress(FIRST, raw_page([10], cursor(11)), set(), 1000)
    _check_progress(FIRST, raw_page([10], cursor(11)), set(), 999)


def aggs(
    ticker: str = "AAPL",
    multiplier: str = "1",
    timespan: str = "minute",
    start: str = "2024-01-01",
    to: str = "2024-01-31",
) -> str:
    return f"{BASE}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start}/{to}"


@pytest.mark.parametrize(
    "elsewhere",
    [
        aggs(ticker="MSFT", start="11"),
        aggs(multiplier="5", start="11"),
        aggs(timespan="hour", start="11"),
        aggs(start="11", to="2024-12-31"),
        aggs(start="11", to="1706745599999"),  # the same instant as a number: still not as asked
        f"{BASE}/v3/aggs/ticker/AAPL/range/1/minute/11/2024-01-31",
    ],
    ids=["ticker", "multiplier", "timespan", "to", "to-as-ms", "another-path"],
)
def test_a_next_url_may_change_only_from_and_the_query(elsewhere):
    """A cursor that leads to another ticker, timespan, multiplier or `to` would store some
    other request's bars under this unit: the unit fails as a pagination error."""
    for target in (elsewhere, elsewhere + "?cursor=x"):
        with pytest.raises(ProtocolError, match=r"^next_url changes more than `from`") as raised:
            _check_progress(FIRST, raw_page([10], target), set(), 1)
        assert raised.value.error_class == "pagination"
    client = ScriptedClient([page([100, 200], elsewhere + "?cursor=x")])
    with pytest.raises(ProtocolError, match="^next_url changes more than `from`"):
        pages_of(client)
    assert len(client.calls) == 1  # never followed


def test_a_next_url_with_a_new_from_and_query_is_followed_whatever_the_ticker_spelling():
    _check_progress(FIRST, raw_page([10], aggs(start="11") + "?cursor=abc&limit=5"), set(), 1)
    dotted = aggs(ticker="BRK.B")
    _check_progress(dotted, raw_page([10], aggs(ticker="BRK%2EB", start="11") + "?cursor=a"), set(), 1)


@pytest.mark.parametrize("first_of_second", [150, 200, 50])
def test_a_page_that_goes_back_to_the_previous_pages_bars_fails_the_unit(first_of_second):
    """A page's bars must all come after the previous page's last bar: a month is settled as
    soon as a page passes its end, so a later page going back would lose its bars silently."""
    client = ScriptedClient([page([100, 200], cursor(201)), page([first_of_second, 300])])
    frames = iter_pages(client, "AAPL", "minute", D(2024, 1, 1), D(2024, 1, 31), True, FetchCost())  # type: ignore[arg-type]
    assert next(frames).get_column("t").to_list() == [100, 200]
    with pytest.raises(
        ProtocolError, match="^a page goes back to or before the previous page's last bar$"
    ) as raised:
        next(frames)
    assert raised.value.error_class == "pagination"


def test_pages_that_follow_each_other_in_time_pass_whatever_their_gaps():
    client = ScriptedClient(
        [page([100, 200], cursor(201)), page([], cursor(300)), page([201], cursor(202)), page([5000])]
    )
    with pytest.raises(ProtocolError, match="^a page with no bars says there is more$"):
        pages_of(client)  # (the empty page in between is refused on its own account)
    client = ScriptedClient([page([100, 200], cursor(201)), page([201, 900], cursor(901)), page([5000])])
    assert pages_of(client) == [[100, 200], [201, 900], [5000]]

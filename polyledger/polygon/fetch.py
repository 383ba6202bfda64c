"""Fetching one unit's bars: the aggregates request and its pagination, as one object.

`next_url` is followed exactly as given (the key travels in a header). A page that says
there is more but does not advance, or points elsewhere, fails the unit as a protocol
error: a unit can never loop.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from polyledger.errors import FatalRunError, PermanentError, ProtocolError
from polyledger.polygon.aggs import AggregatesPage, decode_aggregates
from polyledger.polygon.client import PolygonClient

PAGE_LIMIT = 50_000
MAX_PAGES = 1_000  # a month of minute bars needs 1; this only stops a runaway server
_FROM_IN_PATH = re.compile(r"/range/\d+/[a-z]+/([^/]+)/[^/?]+")


class EndpointNotFound(FatalRunError):
    error_class = "endpoint_not_found"


@dataclass
class FetchCost:
    """What a fetch has spent so far (requests, bytes, the last request id), filled as
    pages arrive, so a caller still knows it when the fetch fails half-way."""

    requests: int = 0
    bytes: int = 0
    request_id: str | None = None


def aggregates_url(base_url: str, ticker: str, timespan: str, start: dt.date, end: dt.date) -> str:
    return f"{base_url}/v2/aggs/ticker/{ticker}/range/1/{timespan}/{start.isoformat()}/{end.isoformat()}"


def _page_start(url: str) -> int | None:
    """The `from` of an aggregates URL as epoch ms, or None when it is a date."""
    match = _FROM_IN_PATH.search(url)
    if not match:
        return None
    value = match.group(1)
    return int(value) if value.isdigit() else None


def iter_pages(
    client: PolygonClient,
    ticker: str,
    timespan: str,
    start: dt.date,
    end: dt.date,
    adjusted: bool,
    spent: FetchCost,
) -> Iterator[pl.DataFrame]:
    """The bars of [start, end], page by page in time order (raw columns, never empty);
    requests and bytes are counted in `spent` as they go."""
    url = aggregates_url(client.base_url, ticker, timespan, start, end)
    params: dict[str, str] | None = {
        "adjusted": "true" if adjusted else "false",
        "sort": "asc",
        "limit": str(PAGE_LIMIT),
    }
    seen: set[str] = set()
    while True:
        page = _get_page(client, url, params, spent)
        if page.adjusted is not None and page.adjusted != adjusted and params is None:
            # the cursor may not carry `adjusted`: ask once more, saying it explicitly
            page = _get_page(client, url, {"adjusted": "true" if adjusted else "false"}, spent)
        if page.adjusted is not None and page.adjusted != adjusted:
            raise ProtocolError(
                f"asked for adjusted={adjusted} but got adjusted={page.adjusted}",
                error_class="adjusted_mismatch",
            )
        if page.bars.height:
            yield page.bars
        if not page.next_url:
            return
        _check_progress(url, page, seen, len(seen) + 1)
        seen.add(url)
        url, params = page.next_url, None


def _get_page(
    client: PolygonClient, url: str, params: dict[str, str] | None, fetched: FetchCost
) -> AggregatesPage:
    try:
        response = client.get(url, params, decode=decode_aggregates)
    except PermanentError as exc:
        if exc.error_class == "not_found":
            # the aggregates endpoint answers an unknown ticker with an empty 200: a 404
            # means the URL itself is wrong, for every unit alike
            raise EndpointNotFound(
                f"the API has no aggregates endpoint at {client.base_url} (404): check --base-url"
            ) from None
        raise
    page = response.decoded
    assert page is not None
    fetched.requests += response.tries
    fetched.bytes += len(response.body)
    fetched.request_id = page.request_id or response.request_id
    return page


def _check_progress(url: str, page: AggregatesPage, seen: set[str], pages: int) -> None:
    next_url = page.next_url or ""
    if pages >= MAX_PAGES:
        raise ProtocolError(f"more than {MAX_PAGES} pages for one unit", error_class="pagination")
    if page.bars.height == 0:
        raise ProtocolError("a page with no bars says there is more", error_class="pagination")
    next_start = _page_start(next_url)
    if next_start is None:
        raise ProtocolError("next_url has no epoch-ms start to follow", error_class="pagination")
    last_bar = int(page.bars.get_column("t").max())  # type: ignore[arg-type]
    current_start = _page_start(url)
    if (
        next_url in seen
        or next_url == url
        or next_start <= last_bar
        or (current_start is not None and next_start <= current_start)
    ):
        raise ProtocolError("next_url does not advance", error_class="pagination")

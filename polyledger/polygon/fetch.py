"""The aggregates endpoint (one unit's bars): its URL, its progress guard and the
`adjusted` check, paged by `paging.iter_pages`.

A page that says there is more but does not advance past its bars, or points elsewhere
(another ticker, timespan, multiplier or `to`: a next_url may move `from` and the query
only), fails the unit as a protocol error: a unit can never loop. So does a page that
goes back to or before the previous page's last bar: a month is settled as soon as a page
passes its end, so bars arriving for it later would be lost without a word.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import polars as pl

from polyledger.errors import FatalRunError, PermanentError, ProtocolError
from polyledger.polygon import paging
from polyledger.polygon.aggs import AggregatesPage, decode_aggregates
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.paging import AskAgain, FetchCost

PAGE_LIMIT = 50_000
MAX_PAGES = 1_000  # a month of minute bars needs 1; this only stops a runaway server
_FROM_IN_PATH = re.compile(r"/range/\d+/[a-z]+/([^/]+)/[^/?]+")
_AGGS_PATH = re.compile(r"^(.*/v2/aggs/ticker/)([^/]+)/range/([^/]+)/([^/]+)/[^/]+/([^/]+)$")


class EndpointNotFound(FatalRunError):
    error_class = "endpoint_not_found"


def aggregates_url(base_url: str, ticker: str, timespan: str, start: dt.date, end: dt.date) -> str:
    return f"{base_url}/v2/aggs/ticker/{ticker}/range/1/{timespan}/{start.isoformat()}/{end.isoformat()}"


def _page_start(url: str) -> int | None:
    """The `from` of an aggregates URL as epoch ms, or None when it is a date."""
    match = _FROM_IN_PATH.search(url)
    if not match:
        return None
    value = match.group(1)
    return int(value) if value.isdigit() else None


def _route(url: str) -> tuple[str, ...] | None:
    """What a next_url must keep of the URL it came from: the path but for `from` (the
    ticker compared decoded: how it is spelled in a path does not matter)."""
    match = _AGGS_PATH.match(urlsplit(url).path)
    if not match:
        return None
    head, ticker, multiplier, timespan, to = match.groups()
    return head, unquote(ticker), multiplier, timespan, to


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
    pages = paging.iter_pages(
        client,
        aggregates_url(client.base_url, ticker, timespan, start, end),
        {"adjusted": flag(adjusted), "sort": "asc", "limit": str(PAGE_LIMIT)},
        decode=decode_aggregates,
        guard=_Progress(),
        spent=spent,
        check=AdjustedAsAsked(adjusted),
    )
    last_bar: int | None = None  # of the previous page with bars
    try:
        for page in pages:
            if page.ticker is not None and page.ticker != ticker:  # case-sensitive, as symbols are
                raise ProtocolError(
                    f"asked for {ticker}'s bars but the answer says they are {page.ticker}'s",
                    error_class="protocol",
                )
            bars = page.bars
            del page  # nothing here keeps a decoded page while the next one is asked for
            if bars.height:
                times = bars.get_column("t")
                if last_bar is not None and times.min() <= last_bar:  # type: ignore[operator]
                    raise ProtocolError(
                        "a page goes back to or before the previous page's last bar",
                        error_class="pagination",
                    )
                last_bar = int(times.max())  # type: ignore[arg-type]
                del times
                yield bars
            del bars
    except PermanentError as exc:
        if exc.error_class != "not_found":
            raise
        # the aggregates endpoint answers an unknown ticker with an empty 200: a 404
        # means the URL itself is wrong, for every unit alike
        raise EndpointNotFound(
            f"the API has no aggregates endpoint at {client.base_url} (404): check --base-url"
        ) from None


def flag(value: bool) -> str:
    return "true" if value else "false"


class AdjustedAsAsked:
    """Every page must be as adjusted as asked (a page that does not say is taken)."""

    def __init__(self, adjusted: bool) -> None:
        self.adjusted = adjusted

    def __call__(
        self, page: AggregatesPage, params: dict[str, str] | None, ask_again: AskAgain[AggregatesPage]
    ) -> AggregatesPage:
        if page.adjusted is not None and page.adjusted != self.adjusted and params is None:
            # the cursor may not carry `adjusted`: ask once more, saying it explicitly (paging
            # then says it on every following page too)
            page = ask_again({"adjusted": flag(self.adjusted)})
        if page.adjusted is not None and page.adjusted != self.adjusted:
            raise ProtocolError(
                f"asked for adjusted={self.adjusted} but got adjusted={page.adjusted}",
                error_class="adjusted_mismatch",
            )
        return page


class _Progress:
    """The aggregates' progress guard: `_check_progress` against the URLs fetched so far."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, url: str, page: AggregatesPage, pages: int) -> None:
        _check_progress(url, page, self.seen, pages)
        self.seen.add(url)


def _check_progress(url: str, page: AggregatesPage, seen: set[str], pages: int) -> None:
    next_url = page.next_url or ""
    if pages >= MAX_PAGES:
        raise ProtocolError(f"more than {MAX_PAGES} pages for one unit", error_class="pagination")
    if page.bars.height == 0:
        raise ProtocolError("a page with no bars says there is more", error_class="pagination")
    next_start = _page_start(next_url)
    if next_start is None:
        raise ProtocolError("next_url has no epoch-ms start to follow", error_class="pagination")
    here = _route(url)
    if here is None or _route(next_url) != here:
        raise ProtocolError(
            "next_url changes more than `from` (another ticker, timespan, multiplier or `to`)",
            error_class="pagination",
        )
    last_bar = int(page.bars.get_column("t").max())  # type: ignore[arg-type]
    current_start = _page_start(url)
    if (
        next_url in seen
        or next_url == url
        or next_start <= last_bar
        or (current_start is not None and next_start <= current_start)
    ):
        raise ProtocolError("next_url does not advance", error_class="pagination")

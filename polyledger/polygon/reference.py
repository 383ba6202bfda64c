"""Reference endpoints (tickers, ticker details, splits, dividends): JSON `results` pages.

Paged by `paging.iter_pages`, like the aggregates; a `next_url` that was already followed
fails the fetch as a protocol error, so it can never loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from polyledger.errors import TransientError, one_line
from polyledger.polygon.client import PolygonClient
from polyledger.polygon.paging import FetchCost, UnseenNextUrl, iter_pages

MAX_PAGES = 10_000  # the whole tickers list is ~30 pages of 1,000; this only stops a runaway server


@dataclass(frozen=True)
class ResultsPage:
    results: list[dict]
    next_url: str | None
    request_id: str | None


def decode_results(body: bytes) -> ResultsPage:
    """A reference body: `results` is a list of objects (a list endpoint) or one object
    (ticker details). Undecodable bodies are transient, as for aggregates."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TransientError(
            f"undecodable reference body: {one_line(exc, 100)}", error_class="invalid_json"
        ) from None
    if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED", None):
        raise TransientError("reference body is not an OK JSON object", error_class="bad_shape")
    results = payload.get("results", [])
    if isinstance(results, dict):
        results = [results]
    if not isinstance(results, list) or not all(isinstance(row, dict) for row in results):
        raise TransientError("reference results are not a list of objects", error_class="bad_shape")
    next_url = payload.get("next_url")
    request_id = payload.get("request_id")
    return ResultsPage(results, next_url or None, str(request_id) if request_id is not None else None)


def iter_results(
    client: PolygonClient, path: str, params: dict[str, str] | None, spent: FetchCost
) -> Iterator[list[dict]]:
    """The `results` of every page of a reference endpoint, in order; requests and bytes
    are counted in `spent` as they go."""
    url = f"{client.base_url}{path}"
    guard = UnseenNextUrl(MAX_PAGES, "reference")
    for page in iter_pages(client, url, params, decode=decode_results, guard=guard, spent=spent):
        yield page.results

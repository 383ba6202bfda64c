"""The one paging routine: every endpoint's pages go through `iter_pages`.

The first request carries the endpoint's parameters; each `next_url` is then followed
exactly as given (the key travels in a header), once the endpoint's progress guard has
accepted it, so no endpoint can loop. What a fetch spends (requests, retries included,
and bytes) is counted here, in one place. An endpoint brings its URL, a decoder and a
guard, and optionally a check of each page that may ask the same URL once more, with
parameters the cursor lost; those are then sent with every following page too (a cursor
that lost them once loses them on every page: one request a page, not two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from polyledger.errors import ProtocolError
from polyledger.polygon.client import PolygonClient


@dataclass
class FetchCost:
    """What a fetch has spent so far (requests, bytes, the last request id), filled as
    pages arrive, so a caller still knows it when the fetch fails half-way; and when the
    API last answered."""

    requests: int = 0
    bytes: int = 0
    request_id: str | None = None
    # the API's clock at its last answer (its Date header, epoch s; None: it sent none):
    # whether the last day asked for had ended for the API when it answered
    served_at: float | None = None


class Page(Protocol):
    """What the routine needs of a decoded page."""

    @property
    def next_url(self) -> str | None: ...

    @property
    def request_id(self) -> str | None: ...


P = TypeVar("P", bound=Page)

# Raises ProtocolError unless `page.next_url` may be followed from `url`; `pages` counts the
# pages fetched so far (this one included, a page asked again not). A guard may keep state:
# make one per fetch.
ProgressGuard = Callable[[str, P, int], None]
# Asks the current URL once more with these parameters (counted like any request); they
# go with every following page as well.
AskAgain = Callable[[dict[str, str]], P]
# The page to go on with, given the page, the parameters it was asked with and `ask_again`:
# may raise, or ask again (e.g. a cursor that lost a parameter).
PageCheck = Callable[[P, dict[str, str] | None, AskAgain[P]], P]


def get_page(
    client: PolygonClient,
    url: str,
    params: dict[str, str] | None,
    decode: Callable[[bytes], P],
    spent: FetchCost,
) -> P:
    """One page, decoded; its requests (retries included) and bytes added to `spent`."""
    response = client.get(url, params, decode=decode)
    page = response.decoded
    assert page is not None
    spent.requests += response.tries
    spent.bytes += len(response.body)
    spent.request_id = page.request_id or response.request_id
    if response.served_at is not None:
        spent.served_at = response.served_at
    return page


def iter_pages(
    client: PolygonClient,
    url: str,
    params: dict[str, str] | None,
    *,
    decode: Callable[[bytes], P],
    guard: ProgressGuard[P],
    spent: FetchCost,
    check: PageCheck[P] | None = None,
) -> Iterator[P]:
    """Every page from `url` in order, each decoded with `decode` and yielded before its
    `next_url` is put to `guard`; what is spent is counted in `spent` as pages arrive."""
    pages = 0
    carried: dict[str, str] = {}  # what a check had to ask again with
    while True:
        page = get_page(client, url, params, decode, spent)
        pages += 1
        if check is not None:
            page = check(page, params, partial(_ask_again, client, url, decode, spent, carried))
        yield page
        next_url = page.next_url
        if not next_url:
            return
        guard(url, page, pages)
        del page  # not kept while the next one is asked for: a decoded page is large
        url, params = next_url, (dict(carried) if carried else None)


def _ask_again(
    client: PolygonClient,
    url: str,
    decode: Callable[[bytes], P],
    spent: FetchCost,
    carried: dict[str, str],
    params: dict[str, str],
) -> P:
    carried.update(params)
    return get_page(client, url, params, decode, spent)


@dataclass
class UnseenNextUrl:
    """A guard for endpoints whose cursors say nothing about where they lead: a next_url
    is followed once at most, and at most `max_pages` pages are fetched."""

    max_pages: int
    what: str  # names the endpoint in the error message
    followed: set[str] = field(default_factory=set)

    def __call__(self, url: str, page: Page, pages: int) -> None:
        next_url = page.next_url or ""
        if next_url in self.followed or pages >= self.max_pages:
            raise ProtocolError(f"{self.what} next_url does not advance", error_class="pagination")
        self.followed.add(next_url)

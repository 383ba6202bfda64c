"""The one paging routine against a scripted client: what it asks, what it counts, and that
no next_url is followed before the endpoint's guard has accepted it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from polyledger.errors import ProtocolError
from polyledger.polygon import reference
from polyledger.polygon.client import Response
from polyledger.polygon.paging import FetchCost, UnseenNextUrl, iter_pages

BASE = "https://api.test"
FIRST = f"{BASE}/v3/things"


@dataclass(frozen=True)
class Things:
    items: list[int]
    next_url: str | None
    request_id: str | None


def decode(body: bytes) -> Things:
    payload = orjson.loads(body)
    return Things(payload["items"], payload.get("next_url"), payload.get("request_id"))


def body(items: list[int], next_url: str | None = None, request_id: str | None = "rq") -> bytes:
    return orjson.dumps({"items": items, "next_url": next_url, "request_id": request_id, "results": []})


class ScriptedClient:
    """Answers from a script; a page past the script fails the test instead of looping."""

    base_url = BASE

    def __init__(self, answers: list[bytes], tries: int = 1) -> None:
        self.answers = list(answers)
        self.tries = tries
        self.calls: list[tuple[str, dict | None]] = []

    def get(self, url: str, params: dict | None = None, decode: Callable | None = None) -> Response:
        self.calls.append((url, params))
        assert self.answers, f"asked for {url} after the last scripted page"
        answer = self.answers.pop(0)
        return Response(answer, 200, "header-id", decode(answer) if decode else None, self.tries)


class Recording:
    """A guard that accepts every next_url and remembers what it was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str | None, int]] = []

    def __call__(self, url: str, page: Things, pages: int) -> None:
        self.shown.append((url, page.next_url, pages))


def refuse(url: str, page: Things, pages: int) -> None:
    raise ProtocolError("refused", error_class="pagination")


def items_of(client: ScriptedClient, guard, spent: FetchCost | None = None, check=None) -> list[list[int]]:
    pages = iter_pages(
        client,  # type: ignore[arg-type]
        FIRST,
        {"limit": "2"},
        decode=decode,
        guard=guard,
        spent=spent if spent is not None else FetchCost(),
        check=check,
    )
    return [page.items for page in pages]


def test_the_first_request_has_the_parameters_and_next_urls_are_followed_verbatim():
    second, third = f"{BASE}/v3/things?cursor=b", f"{BASE}/v3/things?cursor=c"
    client = ScriptedClient([body([1, 2], second), body([3, 4], third), body([5])])
    guard = Recording()
    assert items_of(client, guard) == [[1, 2], [3, 4], [5]]
    assert client.calls == [(FIRST, {"limit": "2"}), (second, None), (third, None)]
    # every next_url went past the guard, with the URL it came from and the pages so far
    assert guard.shown == [(FIRST, second, 1), (second, third, 2)]


def test_a_refused_next_url_is_never_asked_and_its_page_is_still_yielded():
    client = ScriptedClient([body([1, 2], f"{BASE}/v3/things?cursor=b")])
    pages = iter_pages(client, FIRST, None, decode=decode, guard=refuse, spent=FetchCost())  # type: ignore[arg-type]
    assert next(pages).items == [1, 2]
    with pytest.raises(ProtocolError, match="^refused$"):
        next(pages)
    assert len(client.calls) == 1


def test_the_last_page_is_not_put_to_the_guard():
    assert items_of(ScriptedClient([body([1])]), refuse) == [[1]]


def test_requests_retries_included_and_bytes_are_counted_page_by_page():
    first, second = body([1], f"{BASE}/v3/things?cursor=b"), body([2], request_id=None)
    spent = FetchCost()
    pages = iter_pages(
        ScriptedClient([first, second], tries=3), FIRST, None, decode=decode, guard=Recording(), spent=spent
    )  # type: ignore[arg-type]
    next(pages)
    assert (spent.requests, spent.bytes, spent.request_id) == (3, len(first), "rq")
    list(pages)
    # a page without its own request id takes the response header's
    assert (spent.requests, spent.bytes, spent.request_id) == (6, len(first) + len(second), "header-id")


def test_a_page_check_may_ask_the_same_url_again_and_that_is_counted():
    second = f"{BASE}/v3/things?cursor=b"
    first, odd, fixed = body([1], second), body([99]), body([2])
    client = ScriptedClient([first, odd, fixed])

    def check(page: Things, params: dict | None, ask_again) -> Things:
        return ask_again({"fix": "1"}) if page.items == [99] else page

    spent = FetchCost()
    assert items_of(client, Recording(), spent, check) == [[1], [2]]
    assert client.calls[1:] == [(second, None), (second, {"fix": "1"})]
    assert (spent.requests, spent.bytes) == (3, len(first) + len(odd) + len(fixed))


def test_unseen_next_url_refuses_a_cursor_followed_before():
    a, b = f"{BASE}/v3/things?cursor=a", f"{BASE}/v3/things?cursor=b"
    client = ScriptedClient([body([1], a), body([2], b), body([3], a)])
    with pytest.raises(ProtocolError, match="^things next_url does not advance$") as raised:
        items_of(client, UnseenNextUrl(100, "things"))
    assert raised.value.error_class == "pagination" and len(client.calls) == 3


def test_unseen_next_url_stops_after_max_pages():
    client = ScriptedClient([body([n], f"{BASE}/v3/things?cursor={n}") for n in range(5)])
    with pytest.raises(ProtocolError, match="does not advance"):
        items_of(client, UnseenNextUrl(3, "things"))
    assert len(client.calls) == 3


def test_reference_endpoints_never_follow_a_cursor_twice():
    loop = f"{BASE}/v3/reference/tickers?cursor=x"
    page = orjson.dumps({"status": "OK", "results": [{"ticker": "A"}], "next_url": loop})
    client = ScriptedClient([page, page, page])
    spent = FetchCost()
    with pytest.raises(ProtocolError, match="^reference next_url does not advance$"):
        list(reference.iter_results(client, "/v3/reference/tickers", {"limit": "1"}, spent))  # type: ignore[arg-type]
    assert client.calls == [(f"{BASE}/v3/reference/tickers", {"limit": "1"}), (loop, None)]
    assert spent.requests == 2


def test_reference_pages_are_capped(monkeypatch):
    monkeypatch.setattr(reference, "MAX_PAGES", 2)
    pages = [orjson.dumps({"status": "OK", "results": [], "next_url": f"{BASE}/r?c={n}"}) for n in range(4)]
    client = ScriptedClient(pages)
    with pytest.raises(ProtocolError, match="does not advance"):
        list(reference.iter_results(client, "/r", None, FetchCost()))  # type: ignore[arg-type]
    assert len(client.calls) == 2

"""A page's CPU work takes one of a few slots, one per core (`polygon/cores.py`): however
many workers a run has, only that many pages are held decoded at once. A worker keeps its
slot from the decode through the shaping and encoding of the page's unit files, gives it
back before their I/O (fsyncs, the ledger), and never waits for the rate limit (nor the
network) holding one."""

from __future__ import annotations

import datetime as dt
import threading
import weakref

import pytest
from support import API_KEY, run_cli, write_universe

from polyledger.fetch import units as units_module
from polyledger.polygon import cores
from polyledger.polygon.cores import CoreSlots
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.storage import BarStore
from polyledger.testing import Listing, StandInServer, SyntheticMarket


def _free(slots: CoreSlots) -> int:
    """How many slots nobody holds (taken and given back to count them)."""
    taken = 0
    while slots._slots.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        slots._slots.release()
    return taken


def test_a_slot_is_given_back_when_its_block_ends():
    slots = CoreSlots(2)
    with slots.slot():
        assert _free(slots) == 1
    assert _free(slots) == 2


def test_a_kept_slot_outlives_its_block_until_released_and_is_not_taken_twice():
    slots = CoreSlots(1)  # one slot: taking a second one in the same thread would block for ever
    with slots.keeping():
        with slots.slot():
            pass
        assert _free(slots) == 0  # kept past the block
        with slots.slot():  # the thread's kept slot serves it
            pass
        slots.release_kept()
        assert _free(slots) == 1
        with slots.slot():
            pass
    assert _free(slots) == 1  # given back when keeping() ends


def test_a_block_that_raises_gives_its_slot_back_even_while_keeping():
    slots = CoreSlots(1)
    with slots.keeping():
        with pytest.raises(ValueError), slots.slot():
            raise ValueError("undecodable")
        assert _free(slots) == 1  # a retry waits its delay without holding a core


def test_a_kept_slot_serving_a_block_that_raises_is_given_back_too():
    slots = CoreSlots(1)
    with slots.keeping():
        with slots.slot():
            pass
        assert _free(slots) == 0
        with pytest.raises(ValueError), slots.slot():  # the kept one serves it, then it raises
            raise ValueError("undecodable")
        assert _free(slots) == 1


def test_keeping_gives_back_what_it_kept_however_it_ends():
    slots = CoreSlots(1)
    with pytest.raises(RuntimeError), slots.keeping():
        with slots.slot():
            pass
        raise RuntimeError("a fatal error while the page's units were written")
    assert _free(slots) == 1


def test_keeping_is_per_thread():
    slots = CoreSlots(2)
    kept = threading.Event()
    done = threading.Event()

    def worker() -> None:
        with slots.keeping():
            with slots.slot():
                pass
            kept.set()
            done.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    kept.wait(5)
    with slots.slot():  # this thread is not keeping: its slot goes back at the end of the block
        assert _free(slots) == 0
    assert _free(slots) == 1  # the worker's is still kept
    done.set()
    thread.join()
    assert _free(slots) == 2


@pytest.mark.parametrize(
    "history",
    [
        {},
        # the plan's history starts inside a month, answered clipped: every group asks for the
        # days before its first bar again on its own while it holds its first page
        {"history_start": dt.date(2023, 3, 15), "straddle": "clip"},
    ],
)
def test_a_run_encodes_pages_inside_a_slot_and_stores_and_waits_for_requests_outside_one(
    work, monkeypatch, history
):
    market = SyntheticMarket([Listing(f"K{i}", bars_per_day=120) for i in range(6)], seed=5)
    slots = CoreSlots(2)
    monkeypatch.setattr(cores, "PAGE_WORK", slots)
    held: dict[str, list[bool]] = {"encode": [], "store": [], "wait": []}
    encode_unit, put_unit, acquire = BarStore.encode_unit, BarStore.put_unit, RateLimiter.acquire

    def holds() -> bool:
        return getattr(slots._thread, "held", False)

    def watched_encode_unit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        held["encode"].append(holds())
        return encode_unit(self, *args, **kwargs)

    def watched_put_unit(self, encoded, still_ours=None):  # type: ignore[no-untyped-def]
        held["store"].append(holds())
        return put_unit(self, encoded, still_ours)

    def watched_acquire(self, stop=None):  # type: ignore[no-untyped-def]
        if threading.current_thread().name.startswith("polyledger-worker"):
            held["wait"].append(holds())
        return acquire(self, stop)

    monkeypatch.setattr(BarStore, "encode_unit", watched_encode_unit)
    monkeypatch.setattr(BarStore, "put_unit", watched_put_unit)
    monkeypatch.setattr(RateLimiter, "acquire", watched_acquire)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=3_000, **history) as server:
        write_universe(work / "universe.csv", [f"K{i}" for i in range(6)])
        planned = run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-06-30")
        assert planned.code == 0
        result = run_cli("run", "--base-url", server.url, "--workers", "8", "--rate", "5000")
    assert result.code in (0, 1), result.err  # clipped months before the history fail (not_entitled)
    files = 6 * (3 if history else 6)  # every unit with bars: written once
    assert len(held["encode"]) == files and all(held["encode"])  # every file encoded in a slot
    assert len(held["store"]) == files and not any(held["store"])  # and stored outside one
    assert len(held["wait"]) > 2 * 6 and not any(held["wait"])  # every request waited for outside one
    assert _free(slots) == 2


def test_no_decoded_page_is_kept_while_the_next_request_waits(work, monkeypatch):
    """Pages of 3,000 bars, months of about 2,500: each page settles a month, and what it
    leaves for the next is a copy of its tail, so the page itself must be gone by the time
    its worker waits for its next request (a loop variable or a suspended generator holding
    it would keep one decoded page per waiting worker)."""
    market = SyntheticMarket([Listing(f"K{i}", bars_per_day=120) for i in range(6)], seed=5)
    last = threading.local()
    alive: list[bool] = []
    add_page, acquire = units_module._Progress.add_page, RateLimiter.acquire

    def watched_add_page(self, page):  # type: ignore[no-untyped-def]
        last.page = weakref.ref(page)
        return add_page(self, page)

    def watched_acquire(self, stop=None):  # type: ignore[no-untyped-def]
        page = getattr(last, "page", None)
        if page is not None:
            alive.append(page() is not None)
            last.page = None
        return acquire(self, stop)

    monkeypatch.setattr(units_module._Progress, "add_page", watched_add_page)
    monkeypatch.setattr(RateLimiter, "acquire", watched_acquire)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=3_000) as server:
        write_universe(work / "universe.csv", [f"K{i}" for i in range(6)])
        planned = run_cli("plan", "--universe", "universe.csv", "--from", "2023-01-01", "--to", "2023-06-30")
        assert planned.code == 0
        assert run_cli("run", "--base-url", server.url, "--workers", "8", "--rate", "5000").code == 0
    assert len(alive) > 2 * 6 and not any(alive)

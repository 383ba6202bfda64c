"""Shared fixtures: one synthetic market, stand-in servers on ephemeral ports, HTTP helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import requests

from polyledger.testing import Listing, StandInServer, SyntheticMarket

KEY = "demo-key"
D = dt.date

LISTINGS = [
    Listing("DENSE", bars_per_day=900),
    Listing("SPARSE", bars_per_day=50),
    Listing("MID"),  # the default 200 bars/day
    # listed and delisted inside March 2024
    Listing("NEWCO", list_date=D(2024, 3, 13), delist_date=D(2024, 3, 27), bars_per_day=300),
]


@pytest.fixture(scope="session")
def market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=7)


@pytest.fixture
def make_server(market: SyntheticMarket) -> Iterator[Callable[..., StandInServer]]:
    """Factory: make_server(**knobs) -> a started server, stopped at teardown."""
    started: list[StandInServer] = []

    def make(**knobs: object) -> StandInServer:
        server = StandInServer(market, api_keys=[KEY], **knobs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., StandInServer]) -> StandInServer:
    return make_server()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive session that sends the key the way the official clients do."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        yield session

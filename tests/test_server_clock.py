"""A PostgreSQL ledger's clock is the server's (polyledger/ledger/server_clock.py): hosts
whose own clocks differ never judge each other's leases by them."""

from __future__ import annotations

import datetime as dt

import pytest

from polyledger.ledger.server_clock import REMEASURE_SECONDS, ServerClock

UTC = dt.timezone.utc


class _Host:
    """A host's clock (two minutes fast), the server's, and a monotonic clock, all moved by the test."""

    def __init__(self) -> None:
        self.server = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self.skew = dt.timedelta(minutes=2)
        self.elapsed = 0.0
        self.down = False
        self.asked = 0

    def local(self) -> dt.datetime:
        return self.server + self.skew

    def server_now(self) -> dt.datetime:
        self.asked += 1
        if self.down:
            raise ConnectionError("server gone")
        return self.server

    def advance(self, seconds: float) -> None:
        self.server += dt.timedelta(seconds=seconds)
        self.elapsed += seconds


def test_the_clock_reads_the_servers_time_whatever_the_hosts():
    host = _Host()
    clock = ServerClock(host.server_now, local=host.local, monotonic=lambda: host.elapsed)
    assert clock() == host.server
    host.advance(30)
    assert clock() == host.server and host.asked == 1  # measured once, then the local clock moves it


def test_the_offset_is_measured_again_every_few_minutes_and_kept_when_the_server_is_away():
    host = _Host()
    clock = ServerClock(host.server_now, local=host.local, monotonic=lambda: host.elapsed)
    clock()
    host.skew = dt.timedelta(minutes=3)  # the host's clock stepped (NTP, a VM resumed)
    host.advance(REMEASURE_SECONDS)
    assert clock() == host.server and host.asked == 2
    host.down, host.skew = True, dt.timedelta(minutes=4)
    host.advance(REMEASURE_SECONDS)
    assert clock() == host.server  # the monotonic clock carries the last measurement on
    fresh = ServerClock(host.server_now, local=host.local, monotonic=lambda: host.elapsed)
    with pytest.raises(ConnectionError):  # never a guess when nothing was ever measured
        fresh()


def test_a_wall_clock_step_or_a_suspend_is_noticed_and_measured_again_at_once():
    """A step of the host's clock seconds after a measurement (NTP, `date -s`) used to move
    the ledger's clock with it for up to REMEASURE_SECONDS (host B then took back host A's
    live units); a suspended machine's monotonic clock stands still while the wall clock
    moves on. Either way the two clocks part, and the server is asked again."""
    host = _Host()
    clock = ServerClock(host.server_now, local=host.local, monotonic=lambda: host.elapsed)
    clock()
    host.skew += dt.timedelta(minutes=2)  # stepped forward, no time gone by
    assert clock() == host.server and host.asked == 2
    host.server += dt.timedelta(minutes=10)  # suspended ten minutes: the monotonic clock stood still
    assert clock() == host.server and host.asked == 3
    host.advance(10)
    assert clock() == host.server and host.asked == 3  # no step since: not asked again

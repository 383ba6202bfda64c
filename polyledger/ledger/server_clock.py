"""The time hosts sharing a PostgreSQL ledger agree on: the server's.

Leases are written by the host that claims (its clock plus the lease) and judged expired
by every other host (its own clock): two hosts whose clocks differ by more than a lease
would take back each other's live units. So on PostgreSQL a ledger's clock is the server's
time as last measured (one `SELECT clock_timestamp()`, its round trip halved) carried on by
this host's monotonic clock, which no wall-clock step moves (NTP correcting a drifted clock,
`date -s`); measured again every few minutes, and at once when the wall clock and the
monotonic one part (a step, or a machine or VM suspended: the monotonic clock stood still).
A SQLite ledger lives on one machine, whose clock every process shares: its ledger keeps
the local clock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from polyledger.ledger.records import Clock, utc_now

REMEASURE_SECONDS = 300.0  # clocks drift by milliseconds a day: a few minutes is plenty
# the wall clock and the monotonic one parted by more than this: measured again at once
STEP_SECONDS = 1.0


class ServerClock:
    """Callable like a `Clock`: the server's time, measured, carried on by the monotonic clock."""

    def __init__(
        self,
        server_now: Callable[[], dt.datetime],
        local: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server_now = server_now
        self._local = local  # only to notice a step or a suspend (never read for the time)
        self._monotonic = monotonic
        # (server time, local time, monotonic time) at the last measurement
        self._anchor: tuple[dt.datetime, dt.datetime, float] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            if self._anchor is None:
                self._anchor = self._measure()  # the server unreachable: as any ledger call
            else:
                server, local, mono = self._anchor
                elapsed = self._monotonic() - mono
                parted = abs((self._local() - local).total_seconds() - elapsed) > STEP_SECONDS
                if parted or elapsed >= REMEASURE_SECONDS:
                    try:
                        self._anchor = self._measure()
                    except Exception:  # noqa: BLE001 - a reconnecting server: the monotonic clock carries on
                        moved = server + dt.timedelta(seconds=elapsed)
                        self._anchor = (moved, self._local(), mono + elapsed)
            server, _, mono = self._anchor
            return server + dt.timedelta(seconds=self._monotonic() - mono)

    def _measure(self) -> tuple[dt.datetime, dt.datetime, float]:
        before = self._monotonic()
        server = self._server_now()
        after = self._monotonic()
        return server, self._local(), before + (after - before) / 2

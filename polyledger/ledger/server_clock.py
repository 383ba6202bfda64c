"""The time hosts sharing a PostgreSQL ledger agree on: the server's.

Leases are written by the host that claims (its clock plus the lease) and judged expired
by every other host (its own clock): two hosts whose clocks differ by more than a lease
would take back each other's live units. So on PostgreSQL a ledger's clock is this host's
clock corrected by its offset from the server's, measured when first read and again every
few minutes (one `SELECT clock_timestamp()` each, its round trip halved). A SQLite ledger
lives on one machine, whose clock every process shares: its ledger keeps the local clock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from polyledger.ledger.records import Clock, utc_now

REMEASURE_SECONDS = 300.0  # clocks drift by milliseconds a day: a few minutes is plenty


class ServerClock:
    """Callable like a `Clock`: the local time plus the server's offset from it."""

    def __init__(
        self,
        server_now: Callable[[], dt.datetime],
        local: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server_now = server_now
        self._local = local
        self._monotonic = monotonic
        self._offset: dt.timedelta | None = None
        self._measured_at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            if self._offset is None:
                self._offset = self._measure()  # the server unreachable: as any ledger call
                self._measured_at = self._monotonic()
            elif self._monotonic() - self._measured_at >= REMEASURE_SECONDS:
                try:
                    self._offset = self._measure()
                except Exception:  # noqa: BLE001 - a reconnecting server: the last offset holds
                    pass
                self._measured_at = self._monotonic()
            offset = self._offset
        return self._local() + offset

    def _measure(self) -> dt.timedelta:
        before = self._local()
        server = self._server_now()
        after = self._local()
        return server - (before + (after - before) / 2)

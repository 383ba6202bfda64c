"""A circuit breaker for the whole run: when most recent requests fail, stop sending,
probe now and then, and give up after a bounded time instead of failing every unit.

Only transient failures (5xx, timeouts, resets, garbage bodies) count against the API;
429s are the rate limiter's business and 4xx answers prove the API is up.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from polyledger.errors import FatalRunError


class CircuitOpen(FatalRunError):
    """The API kept failing for longer than the breaker waits: the run stops."""

    error_class = "circuit_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        window: int = 40,
        min_samples: int = 20,
        failure_ratio: float = 0.8,
        first_probe_after: float = 2.0,
        max_probe_interval: float = 30.0,
        give_up_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.min_samples = min_samples
        self.failure_ratio = failure_ratio
        self.first_probe_after = first_probe_after
        self.max_probe_interval = max_probe_interval
        self.give_up_after = give_up_after
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=window)
        self._condition = threading.Condition()
        self._opened_at: float | None = None
        self._next_probe_at = 0.0
        self._probe_interval = first_probe_after
        self._probe_owner: int | None = None
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def before_request(self, stop: threading.Event) -> None:
        """Block while the circuit is open; one caller at a time goes through as a probe.
        Raises CircuitOpen once the API has been failing for `give_up_after` seconds."""
        me = threading.get_ident()
        with self._condition:
            while self._opened_at is not None and not stop.is_set():
                now = self._clock()
                if now - self._opened_at > self.give_up_after:
                    failed = sum(1 for ok in self._recent if not ok)
                    raise CircuitOpen(
                        f"the API failed {failed} of the last {len(self._recent)} requests and did not "
                        f"recover within {self.give_up_after:.0f}s; stopping (units are left pending: "
                        "run again later)"
                    )
                if self._probe_owner == me:
                    return
                if self._probe_owner is None and now >= self._next_probe_at:
                    self._probe_owner = me
                    return
                wait = max(0.01, min(self._next_probe_at - now, 1.0)) if self._probe_owner is None else 1.0
                self._condition.wait(wait)

    def abandon(self) -> None:
        """The caller's request ended without a verdict (429, stop): free the probe slot."""
        with self._condition:
            if self._probe_owner == threading.get_ident():
                self._probe_owner = None
                self._condition.notify_all()

    def record(self, ok: bool) -> None:
        with self._condition:
            me = threading.get_ident()
            if self._opened_at is not None:
                if self._probe_owner != me:
                    return  # a request that started before the circuit opened
                self._probe_owner = None
                if ok:
                    self._opened_at = None
                    self._recent.clear()
                    self._probe_interval = self.first_probe_after
                    self._condition.notify_all()
                else:
                    self._probe_interval = min(self._probe_interval * 2, self.max_probe_interval)
                    self._next_probe_at = self._clock() + self._probe_interval
                    self._recent.append(False)
                    self._condition.notify_all()
                return
            self._recent.append(ok)
            failures = sum(1 for item in self._recent if not item)
            if len(self._recent) >= self.min_samples and failures >= self.failure_ratio * len(self._recent):
                self.trips += 1
                self._opened_at = self._clock()
                self._next_probe_at = self._opened_at + self._probe_interval

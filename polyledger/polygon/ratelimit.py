"""One rate limiter for the whole run, shared by every worker thread.

Requests are spaced on a schedule (a token bucket with a small burst). A 429 halves the
rate and pauses everyone until its Retry-After; each success adds a little back, never
above the configured ceiling: additive increase, multiplicative decrease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        min_rate: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate
        self.rate = rate
        self.min_rate = min(min_rate, rate)
        self.burst = max(1.0, burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = clock()
        self._paused_until = 0.0
        self.throttled = 0  # 429s seen

    def reserve(self) -> float:
        """Take the next slot; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            earliest = max(now - (self.burst - 1) / self.rate, self._paused_until)
            slot = max(self._next_slot, earliest)
            self._next_slot = slot + 1.0 / self.rate
            return max(0.0, slot - now)

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this caller may send a request. False if `stop` was set meanwhile."""
        delay = self.reserve()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return not (stop is not None and stop.is_set())

    def on_success(self) -> None:
        with self._lock:
            if self.rate < self.ceiling:
                # additive: about +1 request/s for every `rate` successes
                self.rate = min(self.ceiling, self.rate + 1.0 / max(self.rate, 1.0))

    def on_throttled(self, retry_after: float | None) -> None:
        """The server said 429: slow everyone down, and pause for Retry-After if given."""
        with self._lock:
            self.throttled += 1
            self.rate = max(self.min_rate, self.rate / 2)
            now = self._clock()
            pause = retry_after if retry_after is not None else 1.0 / self.rate
            self._paused_until = max(self._paused_until, now + min(pause, 300.0))
            self._next_slot = max(self._next_slot, self._paused_until)

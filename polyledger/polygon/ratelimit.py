"""One rate limiter for the whole run, shared by every worker thread.

Requests are spaced on a schedule (a token bucket with a small burst). On a 429 the rate
drops under what the server has actually been accepting (successes over the last
seconds), at most once a second however many 429s arrive together, and everyone pauses
for Retry-After when sent. While requests succeed the rate climbs back by a fixed amount
per second, never above the configured ceiling: it converges under the server's real
limit without tuning, and processes sharing one key converge on even shares of it (the
fixed climb and the proportional drop are AIMD, as TCP shares a link). The constants were
chosen with `polyledger.testing.ratesim`, which replays hosts sharing a key on a virtual
clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# successes counted to estimate what the server accepts: the last 3 s, or the time of
# WINDOW_REQUESTS requests at the current rate when that is longer (at a few requests a
# minute, 3 s hold one success or none, and say nothing)
WINDOW_SECONDS = 3.0
WINDOW_REQUESTS = 8
BELOW_ACCEPTED = 0.80  # settle under it: room for the others sharing the key to climb back


def _wait_on(condition: threading.Condition, timeout: float) -> None:
    condition.wait(timeout)


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        min_rate: float = 0.05,
        increase: float = 0.005,  # share of the ceiling won back per second of successes
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Condition, float], object] = _wait_on,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate
        self.rate = rate
        self.min_rate = min(min_rate, rate)
        self.burst = max(1.0, burst)
        # additive in time and the same for every host with the same --rate: hosts sharing a
        # key then drift toward equal shares (per-success growth would keep the first-come
        # host ahead forever, and one starved host would finish its work long after the rest)
        self.increase_per_second = increase * rate
        self._clock = clock
        # how acquire() waits (lock held, released while waiting): tests pass a wait driven
        # by the same virtual clock, so the real acquire runs without real time
        self._wait = wait
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a 429 cancelled the slots taken
        self.generation = 0  # 429s that cancelled the slots taken so far
        self._next_slot = clock()
        self._paused_until = 0.0
        self._last_decrease = float("-inf")
        self._last_increase = clock()
        self._successes: deque[float] = deque()
        self.throttled = 0  # 429s seen

    def reserve(self) -> float:
        """Take the next slot; returns how long the caller must wait before using it."""
        with self._lock:
            return self._reserve(self._clock())

    def _reserve(self, now: float) -> float:
        # slots left unused may be caught up in a burst, but never more requests at once
        # than a second's worth (a server's bucket holds about a second of its limit): at a
        # few requests a minute a burst of 4 would be 3 refusals
        catch_up = min((self.burst - 1) / self.rate, max(0.0, 1.0 - 1.0 / self.rate))
        earliest = max(now - catch_up, self._paused_until)
        slot = max(self._next_slot, earliest)
        self._next_slot = slot + 1.0 / self.rate
        return max(0.0, slot - now)

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this caller may send a request. False if `stop` was set meanwhile.

        A 429 while waiting cancels every slot taken but not yet used, and the waiters take
        new ones at the lowered rate after the pause: with many workers at a low rate the
        slots reach far ahead (8 workers at 5 requests a minute: 96 s), and the old spacing
        would go on drawing 429s long after the server said no."""
        with self._lock:
            while True:
                generation = self.generation
                now = self._clock()
                due = now + self._reserve(now)
                while self.generation == generation:
                    remaining = due - self._clock()
                    if remaining <= 0:
                        return not (stop is not None and stop.is_set())
                    # in short steps, to notice `stop` without a thread of its own
                    self._wait(self._changed, min(remaining, 0.25))
                    if stop is not None and stop.is_set():
                        return False

    def on_success(self) -> None:
        with self._lock:
            now = self._clock()
            self._successes.append(now)
            self._forget_old_successes(now)
            # the time requests flowed since the last success: a Retry-After pause earns
            # nothing, and a gap beyond two requests' spacing (no work, a slow answer) counts
            # as two, so a host at 0.1 requests/s climbs per second like one at 10
            flowing = now - max(self._last_increase, self._paused_until)
            earned = min(max(0.0, flowing), max(1.0, 2.0 / self.rate)) * self.increase_per_second
            self._last_increase = now
            self.rate = min(self.ceiling, self.rate + earned)

    def _window(self) -> float:
        return max(WINDOW_SECONDS, WINDOW_REQUESTS / self.rate)

    def _forget_old_successes(self, now: float) -> None:
        cutoff = now - self._window()
        while self._successes and self._successes[0] < cutoff:
            self._successes.popleft()

    def on_throttled(self, retry_after: float | None) -> None:
        """The server said 429: slow everyone down, and pause for Retry-After if given."""
        with self._lock:
            self.throttled += 1
            now = self._clock()
            if now - self._last_decrease >= 1.0:  # one decision per burst of 429s
                self._last_decrease = now
                self._forget_old_successes(now)  # after a long pause, old successes say nothing
                # successes per second over the window, counted over at least a second: early
                # in a run the server's burst lets a fraction of a second look like a high rate
                span = min(self._window(), now - self._successes[0]) if self._successes else 0.0
                accepted = len(self._successes) / max(span, 1.0) if self._successes else None
                # just under what the server accepted; without that evidence, 30% off
                lowered = (
                    self.rate * 0.7 if accepted is None else min(self.rate * 0.9, BELOW_ACCEPTED * accepted)
                )
                self.rate = max(self.min_rate, lowered)
            pause = max(0.0, retry_after) if retry_after is not None else 1.0 / self.rate
            self._paused_until = max(self._paused_until, now + min(pause, 300.0))
            # slots taken at the old rate are void: the schedule starts again after the pause,
            # and never sooner than one spacing at the new rate (a short Retry-After must not
            # let each 429 release the next request early)
            self._next_slot = max(self._paused_until, now + 1.0 / self.rate)
            self.generation += 1
            self._changed.notify_all()

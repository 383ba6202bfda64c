"""The real `RateLimiter.acquire`, with worker threads, on a virtual clock.

`tests/test_ratelimit.py` checks the schedule through `reserve()`, and the shared-key
simulation re-implements acquire's slot cancellation; here the threads block in the real
`acquire()`. The limiter's clock and wait are a `VirtualTime` the test drives: a waiting
thread parks until the test moves time to its deadline (or a 429 wakes it), and the test
moves time only once every worker is parked or finished, so no slot is passed over unseen
and no result depends on how fast this machine is.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator

import pytest

from polyledger.polygon.ratelimit import CLIMB, FILL, FIRST_CUT, RateLimiter

GUARD = 10.0  # real seconds: only bounds a hang of a broken limiter, never paces a test
START = 1000.0


class VirtualTime:
    """The clock and the wait of one RateLimiter, and the worker threads that use it."""

    def __init__(self) -> None:
        self.now = START
        self.limiter: RateLimiter | None = None
        self.stop = threading.Event()  # every worker's stop event unless a test passes its own
        self.releases: list[tuple[float, str, bool]] = []  # (virtual time, worker, acquire's answer)
        self._state = threading.Condition()
        # keyed by thread object: a finished thread's ident is reused by the next one
        self._parked: dict[threading.Thread, tuple[float, int]] = {}  # -> (wake-up time, generation)
        self._finished: set[threading.Thread] = set()
        self._workers: list[threading.Thread] = []
        self._wakeup: threading.Condition | None = None  # the limiter's condition, once seen

    def make_limiter(self, rate: float, **options: float) -> RateLimiter:
        self.limiter = RateLimiter(rate, clock=self.clock, wait=self.wait, **options)
        return self.limiter

    # --- what the limiter calls (its lock is held) ----------------------------------
    def clock(self) -> float:
        return self.now

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        assert self.limiter is not None
        self._wakeup = condition
        with self._state:
            self._parked[threading.current_thread()] = (self.now + timeout, self.limiter.generation)
            self._state.notify_all()
        condition.wait(GUARD)  # woken by advance_to() or by a 429; a spurious return is harmless

    # --- what the workers call ------------------------------------------------------
    def acquire(self, name: str, stop: threading.Event | None = None) -> bool:
        assert self.limiter is not None
        allowed = self.limiter.acquire(stop or self.stop)
        with self._state:
            self._parked.pop(threading.current_thread(), None)  # running now, until it parks again
            self.releases.append((self.now, name, allowed))
            self._state.notify_all()
        return allowed

    def start(self, name: str, body: Callable[[str], object]) -> None:
        thread = threading.Thread(target=self._run, args=(name, body), name=f"vt-{name}", daemon=True)
        self._workers.append(thread)
        thread.start()

    def _run(self, name: str, body: Callable[[str], object]) -> None:
        try:
            body(name)
        finally:
            with self._state:
                self._finished.add(threading.current_thread())
                self._parked.pop(threading.current_thread(), None)
                self._state.notify_all()

    # --- what the test calls ----------------------------------------------------------
    def _live(self) -> list[threading.Thread]:
        return [thread for thread in self._workers if thread not in self._finished]

    def _quiet(self) -> bool:
        """Every live worker parked for a moment still ahead, under the current generation
        (a 429 since it parked has woken it to take a new slot)."""
        assert self.limiter is not None
        generation = self.limiter.generation
        for thread in self._live():
            parked = self._parked.get(thread)
            if parked is None or parked[0] <= self.now or parked[1] != generation:
                return False
        return True

    def settle(self) -> float | None:
        """Block until the workers are quiet; the earliest wake-up, None when all finished."""
        with self._state:
            assert self._state.wait_for(self._quiet, GUARD), "workers never parked: limiter hung"
            wakeups = [self._parked[thread][0] for thread in self._live()]
        return min(wakeups) if wakeups else None

    def advance_to(self, moment: float) -> None:
        """Set the virtual time and wake every parked worker (under the limiter's lock, so no
        worker is between reading the clock and parking)."""
        wakeup = self._wakeup
        if wakeup is None:
            self.now = moment
            return
        with wakeup:
            self.now = moment
            wakeup.notify_all()

    def run_until(self, moment: float) -> None:
        while (wakeup := self.settle()) is not None and wakeup <= moment:
            self.advance_to(wakeup)
        self.advance_to(moment)
        self.settle()

    def run_to_end(self) -> None:
        while (wakeup := self.settle()) is not None:
            self.advance_to(wakeup)
        for thread in self._workers:
            thread.join(GUARD)

    def release_times(self) -> list[float]:
        return sorted(moment for moment, _, allowed in self.releases if allowed)

    def shut_down(self) -> None:
        """Let every worker out (a failed test must not leave threads parked behind it)."""
        self.stop.set()
        self.advance_to(self.now + 1e6)
        for thread in self._workers:
            thread.join(GUARD)


@pytest.fixture
def vt() -> Iterator[VirtualTime]:
    time = VirtualTime()
    yield time
    time.shut_down()


def acquiring(
    times: int, vt: VirtualTime, after: Callable[[], object] | None = None
) -> Callable[[str], None]:
    """A worker body: `times` requests, each sent as soon as acquire() lets it (then `after`)."""

    def body(name: str) -> None:
        for _ in range(times):
            if not vt.acquire(name):
                return
            if after is not None:
                after()

    return body


def gaps(moments: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(moments)]


# --- tests ------------------------------------------------------------------------------


def test_threads_are_released_one_spacing_apart(vt):
    vt.make_limiter(4)  # one request every 0.25 s
    for index in range(3):
        vt.start(f"w{index}", acquiring(3, vt))
    vt.run_to_end()
    assert vt.release_times() == pytest.approx([START + 0.25 * k for k in range(9)])


def test_a_429_cancels_the_slots_workers_wait_for_and_they_take_new_ones_at_the_new_rate(vt):
    """Eight workers at 2 requests/s hold slots up to 3.5 s ahead. A 429 (Retry-After 1 s)
    voids them: the seven still waiting go out from the end of the pause, spaced at the
    lowered rate, none of them on its old slot."""
    limiter = vt.make_limiter(2)
    for index in range(8):
        vt.start(f"w{index}", acquiring(1, vt))
    refused_at = START + 0.1
    vt.run_until(refused_at)
    assert vt.release_times() == [START]  # one went out; seven wait on slots 0.5 s apart
    limiter.on_throttled(retry_after=1.0)
    lowered = limiter.rate
    assert lowered == pytest.approx(FIRST_CUT * 2)  # a first 429, nothing known: halved
    vt.run_to_end()
    after_pause = refused_at + 1.0
    assert vt.release_times() == pytest.approx([START] + [after_pause + k / lowered for k in range(7)])


def test_retry_after_holds_every_worker_for_that_long(vt):
    limiter = vt.make_limiter(10)
    for index in range(4):
        vt.start(f"w{index}", acquiring(5, vt))
    refused_at = START + 0.25  # after the releases at 0, 0.1 and 0.2 s
    vt.run_until(refused_at)
    limiter.on_throttled(retry_after=5.0)
    vt.run_to_end()
    times = vt.release_times()
    before = [moment for moment in times if moment <= refused_at]
    after = [moment for moment in times if moment > refused_at]
    assert before == pytest.approx([START, START + 0.1, START + 0.2])
    assert after[0] == pytest.approx(refused_at + 5.0)  # nothing inside the pause, then at once
    assert gaps(after) == pytest.approx([1 / limiter.rate] * (len(after) - 1))
    assert len(times) == 20


@pytest.mark.parametrize(
    ("rate", "burst", "at_once"),
    [
        (10.0, 4, 4),  # the burst allowed
        (2.0, 4, 2),  # a second's worth, though the burst allows 4
        (0.5, 4, 1),  # below one a second: no burst at all
    ],
)
def test_after_a_long_idle_a_burst_is_never_more_than_a_seconds_worth(vt, rate, burst, at_once):
    vt.make_limiter(rate, burst=burst)
    vt.advance_to(START + 600)  # unused slots pile up while nobody asks
    for index in range(8):
        vt.start(f"w{index}", acquiring(1, vt))
    vt.run_to_end()
    times = vt.release_times()
    assert times.count(times[0]) == at_once
    assert gaps(times[at_once - 1 :]) == pytest.approx([1 / rate] * (8 - at_once))


def test_while_requests_succeed_the_spacing_shrinks_to_the_ceiling_and_no_further(vt):
    """From a learned limit of 9 (8.55 requests/s) under a ceiling of 10, winning back CLIMB
    per success: each gap is the spacing at the rate after the successes before it, until
    the ceiling, about 157 successes on; never closer than --rate allows."""
    limiter = vt.make_limiter(10, start=9.0)
    vt.start("w", acquiring(250, vt, after=limiter.on_success))
    vt.run_to_end()
    spacing = gaps(vt.release_times())
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(spacing))  # never slower
    expected = [1 / min(10.0, FILL * 9.0 * (1 + CLIMB) ** k) for k in range(len(spacing))]
    assert spacing == pytest.approx(expected)
    assert spacing[-1] == pytest.approx(1 / 10) and min(spacing) >= 1 / 10 - 1e-9  # never above --rate
    reached = next(index for index, gap in enumerate(spacing) if gap == pytest.approx(1 / 10))
    assert reached == math.ceil(math.log(10 / (FILL * 9.0)) / math.log(1 + CLIMB))


def test_a_stop_lets_a_waiting_worker_go_without_its_slot(vt):
    vt.make_limiter(0.5)  # one request every 2 s
    stop = threading.Event()
    for index in range(2):
        vt.start(f"w{index}", lambda name: vt.acquire(name, stop))
    vt.run_until(START + 0.5)  # the second waits for its slot at +2 s
    stop.set()
    vt.run_to_end()
    answers = sorted((moment, allowed) for moment, _, allowed in vt.releases)
    assert answers[0] == (START, True)
    moment, allowed = answers[1]
    assert allowed is False and moment < START + 2.0  # within one wait step of the stop

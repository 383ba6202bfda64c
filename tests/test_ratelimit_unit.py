"""The real `RateLimiter` on a virtual clock, number by number: spacing and bursts, the drop
on a 429 (under what the server accepted, once a second, never under the floor), the pause,
the climb back, and `acquire` (its waits, `stop`, and the slots a 429 cancels). Waiting is
replaced by advancing the clock: no test sleeps or depends on this machine's speed."""

from __future__ import annotations

import threading

import pytest

from polyledger.polygon.ratelimit import (
    BELOW_ACCEPTED,
    WINDOW_REQUESTS,
    WINDOW_SECONDS,
    RateLimiter,
    _wait_on,
)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class VirtualWait:
    """The limiter's `wait`: advances the virtual clock instead of blocking; `during` runs
    at a given wait (as another thread would, with the lock released)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.during: dict[int, object] = {}

    def __call__(self, condition: threading.Condition, timeout: float) -> None:
        self.waits.append(timeout)
        self.clock.now += timeout
        action = self.during.get(len(self.waits))
        if action is not None:
            condition.release()
            try:
                action()  # type: ignore[operator]
            finally:
                condition.acquire()


def limiter_at(rate: float, **options: float) -> tuple[RateLimiter, Clock, VirtualWait]:
    clock = Clock()
    waiter = VirtualWait(clock)
    return RateLimiter(rate, clock=clock, wait=waiter, **options), clock, waiter


def test_the_default_wait_waits_on_the_condition_for_the_time_given():
    condition = threading.Condition()
    with condition:
        _wait_on(condition, 0.0)  # returns: a timeout of zero, not "forever"


def test_a_rate_must_be_positive():
    for rate in (0, -1):
        with pytest.raises(ValueError, match="^rate must be positive$"):
            RateLimiter(rate)


def test_construction_bounds_floor_burst_and_climb():
    limiter = RateLimiter(0.02, burst=0.5, increase=0.01, clock=Clock())
    assert (limiter.rate, limiter.ceiling, limiter.min_rate, limiter.burst) == (0.02, 0.02, 0.02, 1.0)
    assert limiter.increase_per_second == pytest.approx(0.0002)
    assert (limiter.throttled, limiter.generation) == (0, 0)
    default = RateLimiter(10, clock=Clock())
    assert (default.min_rate, default.burst, default.increase_per_second) == (0.05, 1.0, pytest.approx(0.05))


def test_requests_are_spaced_one_interval_apart_from_the_first():
    limiter, clock, _ = limiter_at(4)
    assert [limiter.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    clock.now = 0.5
    assert limiter.reserve() == pytest.approx(0.5)  # the fifth slot is at 1.0


def test_after_idling_a_burst_catches_up_at_most_a_seconds_worth():
    limiter, clock, _ = limiter_at(10, burst=4)
    clock.now = 100.0
    assert [limiter.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.0, pytest.approx(0.1)]
    slow, slow_clock, _ = limiter_at(2, burst=4)  # 4 slots would be 2 s of requests: 1 s only
    slow_clock.now = 100.0
    assert [slow.reserve() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    crawl, crawl_clock, _ = limiter_at(0.5, burst=4)  # under one a second: no burst at all
    crawl_clock.now = 100.0
    assert [crawl.reserve() for _ in range(2)] == [0.0, pytest.approx(2.0)]


def test_a_429_without_evidence_takes_30_percent_off_and_pauses_one_spacing():
    limiter, clock, _ = limiter_at(10)
    clock.now = 5.0
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(7.0)
    assert (limiter.throttled, limiter.generation) == (1, 1)
    assert limiter.reserve() == pytest.approx(1 / 7)


def test_a_429_drops_just_under_what_the_server_accepted():
    limiter, clock, _ = limiter_at(10)
    for i in range(30):  # 10 a second over the 3 s window
        clock.now = i * 0.1
        limiter.on_success()
    clock.now = 3.0
    limiter.on_throttled(2.0)
    assert limiter.rate == pytest.approx(min(10 * 0.9, BELOW_ACCEPTED * 10))


def test_the_drop_is_at_least_ten_percent():
    limiter, clock, _ = limiter_at(10)
    for i in range(60):  # 20 a second: more than this limiter's own rate
        clock.now = i * 0.05
        limiter.on_success()
    clock.now = 3.0
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(9.0)


def test_a_fraction_of_a_second_of_successes_counts_as_a_whole_second():
    limiter, clock, _ = limiter_at(10)
    for i in range(5):
        clock.now = 10.0 + i * 0.1
        limiter.on_success()
    clock.now = 10.5
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * 5)  # 5 per (at least) 1 s


def test_successes_older_than_the_window_say_nothing():
    limiter, clock, _ = limiter_at(10)
    for i in range(10):
        clock.now = i * 0.1
        limiter.on_success()
    clock.now = 100.0
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(7.0)


def test_at_a_slow_rate_the_window_is_eight_requests_long():
    limiter, clock, _ = limiter_at(1)
    assert limiter._window() == WINDOW_REQUESTS / 1 and WINDOW_SECONDS == 3.0
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        clock.now = t
        limiter.on_success()
    clock.now = 7.5  # a 3 s window would have forgotten them all
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * 5 / 7.5)


def test_a_success_exactly_at_the_window_edge_is_still_counted():
    limiter, clock, _ = limiter_at(10)
    for t in (0.0, 0.0, 0.0):
        clock.now = t
        limiter.on_success()
    clock.now = 3.0  # cutoff 0.0: those at 0.0 are not older
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * 3 / 3.0)


def test_one_decision_per_second_of_429s():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(None)
    clock.now = 0.999
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(7.0) and limiter.throttled == 2 and limiter.generation == 2
    clock.now = 1.0
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(4.9)


def test_the_rate_never_drops_under_the_floor():
    limiter, clock, _ = limiter_at(1, min_rate=0.5)
    for t in range(5):
        clock.now = float(t)
        limiter.on_throttled(None)
    assert limiter.rate == 0.5


@pytest.mark.parametrize(("retry_after", "wait"), [(5.0, 5.0), (0.0, 1 / 7), (-3.0, 1 / 7), (1000.0, 300.0)])
def test_retry_after_pauses_everyone_bounded_and_never_under_one_spacing(retry_after, wait):
    limiter, clock, _ = limiter_at(10)
    clock.now = 2.0
    limiter.on_throttled(retry_after)
    assert limiter.reserve() == pytest.approx(wait)
    assert limiter.reserve() == pytest.approx(wait + 1 / 7)


def test_a_shorter_retry_after_never_shortens_a_pause():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(10.0)
    clock.now = 1.0
    limiter.on_throttled(1.0)
    assert limiter.reserve() == pytest.approx(9.0)


def test_successes_win_the_rate_back_per_second_of_flow():
    limiter, clock, _ = limiter_at(10)  # climbs 0.05 a second
    limiter.on_throttled(None)  # 7.0, paused for 1/7 s
    clock.now = 2.0
    limiter.on_success()  # 1.86 s of flow, counted as at most 1 s (two spacings: 0.29 s)
    assert limiter.rate == pytest.approx(7.05)
    clock.now = 2.5
    limiter.on_success()
    assert limiter.rate == pytest.approx(7.075)


def test_a_slow_host_earns_up_to_two_spacings_per_success():
    limiter, clock, _ = limiter_at(0.1)
    limiter.on_throttled(None)  # 0.07
    clock.now = 1000.0
    limiter.on_success()
    assert limiter.rate == pytest.approx(0.07 + (2 / 0.07) * 0.005 * 0.1)


def test_a_pause_earns_nothing():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(10.0)  # 7.0, paused until 10
    clock.now = 5.0
    limiter.on_success()
    assert limiter.rate == pytest.approx(7.0)
    clock.now = 10.5
    limiter.on_success()
    assert limiter.rate == pytest.approx(7.0 + 0.5 * 0.05)


def test_the_climb_stops_at_the_ceiling():
    limiter, clock, _ = limiter_at(10, increase=0.5)
    limiter.on_throttled(None)
    for t in range(2, 20):
        clock.now = float(t)
        limiter.on_success()
    assert limiter.rate == 10.0


def test_acquire_waits_for_its_slot_in_short_steps():
    limiter, clock, waiter = limiter_at(2)
    assert limiter.acquire() is True and waiter.waits == []
    assert limiter.acquire() is True
    assert waiter.waits == [0.25, 0.25] and clock.now == pytest.approx(0.5)
    limiter3, clock3, waiter3 = limiter_at(10)
    limiter3.acquire()
    limiter3.acquire()
    assert waiter3.waits == [pytest.approx(0.1)]


def test_acquire_returns_false_once_stop_is_set():
    limiter, _, waiter = limiter_at(1)
    stop = threading.Event()
    assert limiter.acquire(stop) is True
    waiter.during[2] = stop.set
    assert limiter.acquire(stop) is False
    assert len(waiter.waits) == 2  # noticed at the next step, not at the slot
    fresh, _, fresh_waiter = limiter_at(1)
    assert (
        fresh.acquire(stop) is False and fresh_waiter.waits == []
    )  # a slot due now is not used after a stop


def test_a_429_while_waiting_cancels_the_slot_taken():
    limiter, clock, waiter = limiter_at(1)
    limiter.acquire()
    waiter.during[1] = lambda: limiter.on_throttled(5.0)  # at 0.25 s, 0.75 s before the slot
    assert limiter.acquire() is True
    assert clock.now == pytest.approx(5.25)  # after the pause, not at the old slot (1.0)

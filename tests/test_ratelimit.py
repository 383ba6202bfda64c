"""The shared rate limiter, on a fake clock: spacing, pauses, and how it adapts to 429s."""

from __future__ import annotations

import pytest

from polyledger.polygon.ratelimit import BELOW_ACCEPTED, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_are_spaced_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_a_429_drops_to_just_under_what_the_server_accepted_once_per_burst():
    clock = Clock()
    limiter = RateLimiter(40, clock=clock)
    for _ in range(60):  # the server accepted 20 requests/s for 3 s
        clock.now += 0.05
        limiter.on_success()
    for _ in range(5):  # a burst of 429s from requests already in flight
        limiter.on_throttled(retry_after=1.0)
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * 20, rel=0.05)
    assert limiter.throttled == 5
    assert limiter.reserve() == pytest.approx(1.0)  # everyone waits for Retry-After


def test_success_wins_the_rate_back_slowly_and_never_above_the_ceiling():
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    limiter.on_throttled(retry_after=None)
    lowered = limiter.rate
    assert lowered == pytest.approx(7.0)  # no successes seen yet: 30% off
    for _ in range(100):
        limiter.on_success()
    assert lowered < limiter.rate <= 10
    for _ in range(10_000):
        limiter.on_success()
    assert limiter.rate == 10

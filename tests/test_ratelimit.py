"""The shared rate limiter, on a fake clock: spacing, pauses, how it adapts to 429s, and how
several hosts sharing one key converge on its limit (a simulation on a virtual clock)."""

from __future__ import annotations

import itertools

import pytest

from polyledger.polygon.ratelimit import BELOW_ACCEPTED, RateLimiter
from polyledger.testing.ratesim import simulate_shared_key


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


def test_success_wins_the_rate_back_with_time_and_never_above_the_ceiling():
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    limiter.on_throttled(retry_after=None)
    lowered = limiter.rate
    assert lowered == pytest.approx(7.0)  # no successes seen yet: 30% off
    for _ in range(100):  # many successes at one instant earn nothing: the increase is per second
        limiter.on_success()
    assert limiter.rate == lowered
    for _ in range(20):  # 10 s of successes, less the pause the 429 imposed (1 / rate)
        clock.now += 0.5
        limiter.on_success()
    flowed = 10 - 1 / lowered
    assert limiter.rate == pytest.approx(lowered + flowed * limiter.increase_per_second)
    clock.now += 60  # a long silence (no work) earns at most a second's worth at this rate
    limiter.on_success()
    assert limiter.rate == pytest.approx(lowered + (flowed + 1) * limiter.increase_per_second)
    for _ in range(10_000):
        clock.now += 0.5
        limiter.on_success()
    assert limiter.rate == 10


def test_a_slow_host_climbs_per_second_like_a_fast_one():
    # a success every 4 s at 0.25 requests/s earns 4 s of climb, not one second's worth
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    limiter.rate = 0.25
    for _ in range(10):
        clock.now += 4.0
        limiter.on_success()
    assert limiter.rate == pytest.approx(0.25 + 40 * limiter.increase_per_second)


def test_a_slow_rate_never_bursts_more_than_a_second_of_requests():
    clock = Clock()
    limiter = RateLimiter(5 / 60, burst=4, clock=clock)  # the free plan: 5 requests a minute
    clock.now += 600  # idle for long: unused slots
    waits = [limiter.reserve() for _ in range(3)]
    assert waits[0] == 0 and waits[1] == pytest.approx(12.0) and waits[2] == pytest.approx(24.0)
    fast = RateLimiter(10, burst=4, clock=clock)
    clock.now += 60
    assert [fast.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0, 0.1])  # 4 at once, then spaced


def test_hosts_win_back_the_same_rate_whatever_their_share():
    # the same absolute increase for a host at 2/s as for one at 8/s, so shares even out
    clock = Clock()
    small, large = RateLimiter(20, clock=clock), RateLimiter(20, clock=clock)
    small.rate, large.rate = 2.0, 8.0
    for step in range(1, 41):
        clock.now += 0.125
        large.on_success()  # 8 successes a second
        if step % 4 == 0:
            small.on_success()  # 2 a second
    assert large.rate - 8.0 == pytest.approx(small.rate - 2.0)


# --- several hosts on one key, on a virtual clock ----------------------------------------


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_hosts_sharing_a_key_converge_on_its_limit(hosts):
    """Each host starts at twice the key's limit (hosts x 2 together) and finds the limit alone."""
    limit, seconds, warmup = 20.0, 240.0, 20.0
    key = simulate_shared_key(limit=limit, hosts=hosts, start_rate=2 * limit, seconds=seconds, workers=8)
    assert key.ok_rate(warmup, seconds) >= 0.95 * limit  # the budget is used...
    assert key.throttled_share(warmup, seconds) <= 0.025  # ...with few refusals once converged
    assert sum(key.final_rates) <= 1.2 * limit  # and no host is still far above its share


@pytest.mark.parametrize("hosts", [1, 3])
def test_a_ceiling_far_above_the_limit_costs_few_refusals(hosts):
    """--rate ten times the key's limit: each host climbs back by 0.5% of it per second, yet
    the slots a 429 cancels keep the refusals few."""
    limit, seconds = 20.0, 240.0
    key = simulate_shared_key(limit=limit, hosts=hosts, start_rate=10 * limit, seconds=seconds, workers=8)
    assert key.ok_rate(40, seconds) >= 0.95 * limit
    assert key.throttled_share(40, seconds) <= 0.035


def test_the_free_plan_at_its_limit_is_used_without_refusals():
    limit, seconds = 5 / 60, 6000.0  # 5 requests a minute, 8 workers
    key = simulate_shared_key(limit=limit, hosts=1, start_rate=limit, seconds=seconds, workers=8)
    assert key.ok_rate(1000, seconds) >= 0.95 * limit
    assert key.throttled_share(1000, seconds) <= 0.01


def test_a_429_cancels_the_slots_already_taken():
    """Eight workers at 2 requests/s hold slots up to 3.5 s ahead; after a 429 they must
    take new ones (RateLimiter.acquire waits on `generation`), spaced at the lowered rate
    from the end of the pause, not keep the old ones."""
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    taken = [limiter.reserve() for _ in range(8)]
    assert taken[-1] == pytest.approx(3.5)
    before = limiter.generation
    limiter.on_throttled(retry_after=1.0)
    assert limiter.generation == before + 1
    again = [limiter.reserve() for _ in range(3)]
    spacing = 1 / limiter.rate
    assert again == pytest.approx([1.0, 1.0 + spacing, 1.0 + 2 * spacing])


@pytest.mark.parametrize("retry_after", [0.0, -5.0, 1.0])
def test_a_short_retry_after_never_lets_requests_out_faster_than_the_rate(retry_after):
    clock = Clock()
    limiter = RateLimiter(0.2, burst=4, clock=clock)  # one request every 5 s
    sent = []
    for _ in range(6):  # each request refused 0.3 s after it went out
        clock.now += limiter.reserve()
        sent.append(clock.now)
        clock.now += 0.3
        limiter.on_throttled(retry_after=retry_after)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert all(gap >= 1 / 0.2 - 1e-9 for gap in gaps), gaps


def test_a_late_host_gets_its_share_of_the_key():
    """Hosts joining one after another: the last one is not starved by those already running."""
    limit, hosts, seconds = 20.0, 3, 300.0
    key = simulate_shared_key(
        limit=limit, hosts=hosts, start_rate=2 * limit, seconds=seconds, workers=8, host_start_gap=20.0
    )
    fair = limit / hosts
    assert key.ok_rate(seconds - 60, seconds) >= 0.95 * limit
    assert all(0.6 * fair <= rate <= 1.5 * fair for rate in key.final_rates), key.final_rates


@pytest.mark.parametrize("late_by", [0.3, 1.0, 3.0])
def test_two_hosts_with_equal_work_finish_close_together(late_by):
    """As two hosts with their own work lists would: the one that started a moment later is
    not kept at a small share, so the key is not left half used while it finishes alone."""
    limit, work = 20.0, 1200
    key = simulate_shared_key(
        limit=limit,
        hosts=2,
        start_rate=2 * limit,
        seconds=1000,
        workers=8,
        host_start_gap=late_by,
        work_per_host=work,
    )
    last = max(key.finished_at)
    assert 2 * work / last >= 0.9 * limit
    assert min(key.finished_at) >= 0.7 * last


def test_without_retry_after_hosts_still_converge():
    limit, seconds = 20.0, 180.0
    key = simulate_shared_key(limit=limit, hosts=2, start_rate=2 * limit, seconds=seconds, retry_after=None)
    assert key.ok_rate(20, seconds) >= 0.9 * limit
    assert key.throttled_share(20, seconds) <= 0.05


def test_the_simulated_server_holds_the_burst_it_is_given_and_sends_retry_after_as_told():
    """The issue's server (10 requests/s, a bucket of 5, Retry-After on half the 429s) is
    simulated as configured: at most 5 + 10 t requests accepted by time t, and exactly every
    second 429 carries Retry-After."""
    key = simulate_shared_key(
        limit=10, hosts=1, start_rate=25, seconds=30, workers=8, server_burst=5, retry_after_every=2
    )
    accepted = 0
    for second in range(30):
        accepted += key.ok_by_second.get(second, 0)
        assert accepted <= 5 + 10 * (second + 1)
    assert (
        key.ok_by_second[0]
        <= 5 + 10
        < simulate_shared_key(
            limit=10, hosts=1, start_rate=25, seconds=1, workers=8, server_burst=25
        ).ok_by_second[0]
    )
    refused = sum(key.throttled)
    assert refused > 0 and key.retry_after_sent == refused // 2
    never = simulate_shared_key(limit=10, hosts=1, start_rate=25, seconds=30, workers=8, retry_after=None)
    assert sum(never.throttled) > 0 and never.retry_after_sent == 0

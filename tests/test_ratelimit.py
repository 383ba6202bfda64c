"""The shared rate limiter, on a fake clock: spacing, pauses, how it adapts to 429s, and how
several hosts sharing one key converge on its limit (a simulation on a virtual clock, the
hosts sharing a board as runs on one ledger do): from a limit an earlier run learned
(warm) and from nothing (cold)."""

from __future__ import annotations

import itertools

import pytest

import polyledger.testing.ratesim as ratesim
from polyledger.polygon.ratelimit import FIRST_CUT, RateLimiter
from polyledger.testing.ratesim import TABLE_LIMITS, simulate_shared_key, simulate_table_key


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


def test_a_burst_of_429s_is_one_decision_and_pauses_everyone():
    clock = Clock()
    limiter = RateLimiter(40, clock=clock)
    for _ in range(60):  # the server accepted 20 requests/s for 3 s: its initial burst, mostly
        clock.now += 0.05
        limiter.on_success()
    for _ in range(5):  # a burst of 429s from requests already in flight
        limiter.on_throttled(retry_after=1.0)
    assert limiter.rate == pytest.approx(FIRST_CUT * 40)  # one decision: halved once, not 5 times
    assert limiter.throttled == 5
    assert limiter.reserve() == pytest.approx(1.0)  # everyone waits for Retry-After


def test_a_slow_rate_never_bursts_more_than_a_second_of_requests():
    clock = Clock()
    limiter = RateLimiter(5 / 60, burst=4, clock=clock)  # the free plan: 5 requests a minute
    clock.now += 600  # idle for long: unused slots
    waits = [limiter.reserve() for _ in range(3)]
    assert waits[0] == 0 and waits[1] == pytest.approx(12.0) and waits[2] == pytest.approx(24.0)
    fast = RateLimiter(10, burst=4, clock=clock)
    clock.now += 60
    assert [fast.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0, 0.1])  # 4 at once, then spaced


# --- several hosts on one key, on a virtual clock ----------------------------------------


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_hosts_sharing_a_key_converge_on_its_limit(hosts):
    """Each host starts at twice the key's limit (hosts x 2 together) and finds the limit alone."""
    limit, seconds, warmup = 20.0, 240.0, 20.0
    key = simulate_shared_key(limit=limit, hosts=hosts, start_rate=2 * limit, seconds=seconds, workers=8)
    assert key.ok_rate(warmup, seconds) >= 0.95 * limit  # the budget is used...
    assert key.throttled_share(warmup, seconds) <= 0.025  # ...with few refusals once converged
    # every host holds the key's rate (each takes its share of one grid), not far above the limit
    assert max(key.final_rates) <= 1.2 * limit


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
    """Hosts joining one after another: the last one (from 40 s) takes every third slot of
    the key's grid, not what the others leave over."""
    limit, hosts, seconds, gap = 20.0, 3, 300.0, 20.0
    key = simulate_shared_key(
        limit=limit, hosts=hosts, start_rate=2 * limit, seconds=seconds, workers=8, host_start_gap=gap
    )
    assert key.ok_rate(seconds - 60, seconds) >= 0.95 * limit
    last_share = limit * (seconds - (hosts - 1) * gap) / hosts  # a third of the key while it ran
    assert 0.9 * last_share <= key.ok[-1] <= 1.1 * last_share, key.ok


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


def test_the_simulated_server_holds_the_burst_it_is_given_and_sends_retry_after_as_told(monkeypatch):
    """The issue's server (10 requests/s, a bucket of 5, Retry-After on half the 429s) is
    simulated as configured: at most 5 + 10 t requests accepted by time t, and exactly every
    second 429 carries Retry-After (as the limiters were told)."""
    told: list[float | None] = []

    class Recording(RateLimiter):
        def on_throttled(self, retry_after: float | None) -> None:
            told.append(retry_after)
            super().on_throttled(retry_after)

    monkeypatch.setattr(ratesim, "RateLimiter", Recording)
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
    assert refused > 2 and told == [None, 1.0] * (refused // 2) + [None] * (refused % 2)
    told.clear()
    never = simulate_shared_key(limit=10, hosts=1, start_rate=25, seconds=30, workers=8, retry_after=None)
    assert sum(never.throttled) > 0 and told == [None] * sum(never.throttled)


def test_a_429_on_a_young_grid_always_lowers_the_rate():
    """A window younger than its length takes no margin off what it read, yet it may hold
    the server's first bucket: a 429 always cuts. A leader of 2 on a learned 1/s key, six
    successes in 2 s, then refused at 3 s."""
    clock = Clock()
    limiter = RateLimiter(10.0, start=1.0, clock=clock)
    limiter.lead(2)
    start = clock.now
    limiter.on_throttled(None)  # a first decision, so the next one measures
    for i in range(6):
        clock.now = start + 1.0 + i * 0.3
        limiter.on_success()
    clock.now = start + 3.0
    before = limiter.rate
    limiter.on_throttled(None)
    assert limiter.rate <= 0.9 * before


@pytest.mark.parametrize(
    "case",
    [
        dict(limit=20.0, seconds=60.0, retry_after=5.0, host_start_gap=0.5),  # long Retry-After pauses
        dict(limit=1.0, seconds=300.0, retry_after=None, host_start_gap=0.5, learned=1.0),
    ],
    ids=["20rps-retry-after-5s", "1rps-learned-no-retry-after"],
)
def test_four_hosts_joining_one_by_one_use_the_key(case):
    key = simulate_shared_key(hosts=4, start_rate=100.0, workers=8, **case)
    limit, seconds = case["limit"], case["seconds"]
    assert key.ok_rate(10, seconds) >= 0.9 * limit
    assert key.throttled_share(10) <= 0.02


def test_four_hosts_on_a_deep_bucket_see_few_429s_after_10_s():
    """A server bucket of 30 requests on a 1/s key, hosts 3 s apart: decisions in young
    windows must still cut."""
    key = simulate_shared_key(
        limit=1.0,
        hosts=4,
        start_rate=100.0,
        seconds=300.0,
        workers=8,
        retry_after=1.0,
        server_burst=30.0,
        host_start_gap=3.0,
    )
    assert key.throttled_share(10) <= 0.02


# --- the promised figures: 1-3 hosts, --rate 100, over max(60 s, 300 requests' time) -----------
# As `bench/ratelimit.py --simulate` prints them (the table in bench/RESULTS.md). Known weak
# spot, not promised (figures of 2026-12-02, 01:20, `--gaps 0,0.5,2,5`: accepted from 10 s /
# limit): 3 hosts starting 2 s apart on a key of 1/s, cold: 0.89 (1.1% 429s from 10 s); every
# other row of the gaps table holds (a key of 1/s with hosts 0.5 s apart was 0.63-0.89 before
# the joins kept the grid's spacing and a 429 soon after a measurement confirmed it).

LIMITS = list(TABLE_LIMITS)
GAP = 0.5  # hosts started half a second apart


def rps(limit: float) -> str:
    return f"{limit:.3g}rps"


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize("limit", LIMITS, ids=rps)
def test_from_a_learned_limit_the_key_is_used_from_10_s_with_few_refusals(limit, hosts):
    """Warm: an earlier run on the ledger learned the key's limit."""
    key, seconds = simulate_table_key(limit, hosts, learned=limit)
    assert key.ok_rate(10, seconds) >= 0.9 * limit
    assert key.throttled_share() <= 0.02


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize("limit", LIMITS, ids=rps)
def test_from_nothing_a_key_of_any_size_is_used_from_10_s(limit, hosts):
    """Cold: nothing learned; --rate 100 is found out from the 429s within 10 s, from 5
    requests a minute to 100 a second (on slow keys shared by several hosts, a rate that
    held without a 429 says what the key allows where the window's count reads low)."""
    key, seconds = simulate_table_key(limit, hosts, learned=None)
    assert key.ok_rate(10, seconds) >= 0.9 * limit
    assert key.throttled_share(10) <= 0.02


@pytest.mark.parametrize("learned", [False, True], ids=["cold", "learned"])
@pytest.mark.parametrize("hosts", [2, 3])
@pytest.mark.parametrize("limit", LIMITS, ids=rps)
def test_hosts_starting_half_a_second_apart_use_the_key(limit, hosts, learned):
    """As hosts started by hand or by a scheduler: the later ones join the first's grid."""
    key, seconds = simulate_table_key(limit, hosts, learned=limit if learned else None, host_start_gap=GAP)
    assert key.ok_rate(10, seconds) >= 0.9 * limit
    refused = key.throttled_share() if learned else key.throttled_share(10)  # as the tables above
    assert refused <= 0.02

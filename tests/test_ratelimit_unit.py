"""The real `RateLimiter` on a virtual clock, number by number: spacing and bursts, the decision
on a 429 (a first cut, a measurement, thin evidence; once a second, never under the floor), the
pause, the climb back, a learned start, the leader's grid, and `acquire` (its waits, `stop`,
and the slots a 429 cancels). Waiting is replaced by advancing the clock: no test sleeps or
depends on this machine's speed."""

from __future__ import annotations

import math
import threading

import pytest

from polyledger.polygon.ratelimit import (
    BELOW_ACCEPTED,
    CLIMB,
    FILL,
    FIRST_CUT,
    MAX_CUT,
    MIN_MEASURED,
    NEAR,
    PAUSE_WEIGHT,
    SEEK,
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


def successes(limiter: RateLimiter, clock: Clock, moments: list[float]) -> None:
    for moment in moments:
        clock.now = moment
        limiter.on_success()


def test_the_default_wait_waits_on_the_condition_for_the_time_given():
    condition = threading.Condition()
    with condition:
        _wait_on(condition, 0.0)  # returns: a timeout of zero, not "forever"


def test_a_rate_must_be_positive():
    for rate in (0, -1):
        with pytest.raises(ValueError, match="^rate must be positive$"):
            RateLimiter(rate)


def test_construction_bounds_floor_and_burst_and_starts_at_a_learned_limit():
    limiter = RateLimiter(0.005, burst=0.5, clock=Clock())
    assert (limiter.rate, limiter.ceiling, limiter.min_rate, limiter.burst) == (0.005, 0.005, 0.005, 1.0)
    assert (limiter.throttled, limiter.generation, limiter.known, limiter.measurements) == (0, 0, None, 0)
    assert (limiter.members, limiter.index, limiter.leading) == (1, 0, True)
    default = RateLimiter(10, clock=Clock())
    assert (default.min_rate, default.burst, default.rate) == (0.01, 1.0, 10)
    learned = RateLimiter(10, start=8, clock=Clock())  # a limit an earlier run measured
    assert (learned.known, learned.rate) == (8, pytest.approx(FILL * 8))
    above = RateLimiter(10, start=40, clock=Clock())  # never above --rate, alone on the key
    assert (above.known, above.rate) == (40, 10)


def test_adopt_starts_at_fill_of_a_learned_limit_within_the_keys_ceiling():
    limiter = RateLimiter(10, clock=Clock())
    limiter.adopt(4.0)
    assert (limiter.known, limiter.rate) == (4.0, pytest.approx(FILL * 4.0))
    limiter.adopt(50.0)
    assert (limiter.known, limiter.rate) == (50.0, 10)  # one process: at most its --rate
    limiter.lead(2)  # two processes on the key: the key's rate may reach 2 x --rate
    limiter.adopt(15.0)
    assert limiter.rate == pytest.approx(FILL * 15.0)


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


# --- the decision on a 429 ---------------------------------------------------------------


def test_a_first_429_with_nothing_known_halves_and_pauses_one_spacing():
    """What came through before the first 429 was mostly the server's initial burst: 30
    successes at 10/s measure nothing; the rate halves."""
    limiter, clock, _ = limiter_at(10)
    successes(limiter, clock, [2.0 + i * 0.1 for i in range(30)])
    assert limiter.rate == 10  # nothing refused yet: no climb, --rate it is
    clock.now = 5.0
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(FIRST_CUT * 10)
    assert (limiter.known, limiter.measurements, limiter.throttled, limiter.generation) == (None, 0, 1, 1)
    assert limiter.reserve() == pytest.approx(1 / (FIRST_CUT * 10))


@pytest.mark.parametrize(
    ("start", "per_second"),
    [
        (10.0, 20.0),  # the server accepted more than the rate: under the rate, by 10%
        (20.0, 10.0),  # half the rate: the cut stops at MAX_CUT (a window may count low)
    ],
)
def test_a_measured_429_sets_known_and_drops_under_what_was_accepted(start, per_second):
    limiter, clock, _ = limiter_at(40, start=start)
    count = int(3 * per_second)  # the 3 s window, from its very start (the first success)
    successes(limiter, clock, [i / per_second for i in range(count)])
    before = limiter.rate
    assert before == pytest.approx(FILL * start * (1 + CLIMB) ** count)
    clock.now = 3.0
    limiter.on_throttled(None)
    accepted = count / 3.0
    assert limiter.known == pytest.approx(accepted)  # known is what the key accepted
    expected = max(BELOW_ACCEPTED * min(accepted, before), (1 - MAX_CUT) * before)
    assert limiter.rate == pytest.approx(expected)
    assert limiter.measurements == 1


@pytest.mark.parametrize("seen", [MIN_MEASURED, MIN_MEASURED - 1])
def test_min_measured_successes_measure_and_fewer_only_halve(seen):
    limiter, clock, _ = limiter_at(10, start=10)
    successes(limiter, clock, [2.0 + 0.25 * i for i in range(seen)])  # within the last second
    before = limiter.rate
    clock.now = 3.0
    limiter.on_throttled(None)
    if seen >= MIN_MEASURED:  # alone, counted from the first success in the window: 1 s
        assert limiter.measurements == 1 and limiter.known == pytest.approx(seen / 1.0)
        assert limiter.rate == pytest.approx(max(BELOW_ACCEPTED * seen / 1.0, (1 - MAX_CUT) * before))
    else:  # too few to measure: halve, and no more than seen + 1 in the time they flowed
        assert limiter.measurements == 0 and limiter.known == 10
        assert limiter.rate == pytest.approx(min(FIRST_CUT * before, (seen + 1) / 1.0))


def test_thin_evidence_caps_the_rate_at_what_the_window_let_through():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(None)  # a first cut: 5/s, nothing measured
    successes(limiter, clock, [0.5])  # one success (seeking: 5.25/s)
    clock.now = 3.0
    limiter.on_throttled(None)
    # halving would leave 2.6/s; 2 requests in the 2.5 s flowed is all the evidence allows
    assert limiter.rate == pytest.approx(min(FIRST_CUT * 5 * (1 + SEEK), 2 / 2.5)) == 0.8
    assert (limiter.known, limiter.measurements) == (None, 0)


def test_a_retry_after_pause_counts_at_pause_weight_in_the_window():
    """The server's bucket refilled during a Retry-After pause: the pause counts as partly
    flowing, so what was accepted is not overstated (nor understated) by it."""
    limiter, clock, _ = limiter_at(40)
    limiter.on_throttled(None)  # decided at 0: 20/s
    clock.now = 0.5
    limiter.on_throttled(2.0)  # within the second: no decision, but a pause from 0.5 to 2.5
    successes(limiter, clock, [1.0, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75])  # 7 in the window [1, 4]
    before = limiter.rate
    clock.now = 4.0
    limiter.on_throttled(None)
    paused = 2.5 - 1.0  # the pause's part inside the window (from the first success, at 1.0)
    accepted = 7 / (3.0 - PAUSE_WEIGHT * paused)
    assert limiter.known == pytest.approx(accepted) and limiter.measurements == 1
    assert limiter.rate == pytest.approx(max(BELOW_ACCEPTED * min(accepted, before), (1 - MAX_CUT) * before))


def test_successes_older_than_the_window_say_nothing():
    limiter, clock, _ = limiter_at(10, start=10)
    successes(limiter, clock, [i * 0.1 for i in range(10)])
    before = limiter.rate
    clock.now = 100.0
    limiter.on_throttled(None)
    assert limiter.measurements == 0  # nothing in the window: thin evidence
    assert limiter.rate == pytest.approx(min(FIRST_CUT * before, 1.0))


def test_at_a_slow_rate_the_window_is_eight_requests_long():
    limiter, clock, _ = limiter_at(1, start=1)
    assert limiter._window() == pytest.approx(WINDOW_REQUESTS / (FILL * 1)) and WINDOW_SECONDS == 3.0
    successes(limiter, clock, [0.0, 1.0, 2.0, 3.0, 4.0])
    clock.now = 7.5  # a 3 s window would have forgotten them all
    limiter.on_throttled(None)
    assert limiter.measurements == 1
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * 5 / 7.5)


def test_a_success_exactly_at_the_window_edge_is_still_counted():
    limiter, clock, _ = limiter_at(10, start=10)
    successes(limiter, clock, [0.0] * MIN_MEASURED)
    before = limiter.rate
    clock.now = 3.0  # cutoff 0.0: those at 0.0 are not older
    limiter.on_throttled(None)
    assert limiter.measurements == 1 and limiter.known == pytest.approx(MIN_MEASURED / 3.0)
    assert limiter.rate == pytest.approx(max(BELOW_ACCEPTED * MIN_MEASURED / 3.0, (1 - MAX_CUT) * before))


def test_one_decision_per_second_of_429s():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(None)
    clock.now = 0.999
    limiter.on_throttled(None)
    assert limiter.rate == pytest.approx(5.0) and limiter.throttled == 2 and limiter.generation == 2
    clock.now = 1.0
    limiter.on_throttled(None)
    # a second decision, on no success at all: half, and no more than 1 in the second flowed
    assert limiter.rate == pytest.approx(min(FIRST_CUT * 5.0, 1 / 1.0))


def test_the_rate_never_drops_under_the_floor():
    limiter, clock, _ = limiter_at(1, min_rate=0.5)
    for t in range(5):
        clock.now = float(t)
        limiter.on_throttled(None)
    assert limiter.rate == 0.5


@pytest.mark.parametrize(("retry_after", "wait"), [(5.0, 5.0), (0.0, 0.2), (-3.0, 0.2), (1000.0, 300.0)])
def test_retry_after_pauses_everyone_bounded_and_never_under_one_spacing(retry_after, wait):
    limiter, clock, _ = limiter_at(10)
    clock.now = 2.0
    limiter.on_throttled(retry_after)  # a first cut: 5/s, a spacing of 0.2 s
    assert limiter.reserve() == pytest.approx(wait)
    assert limiter.reserve() == pytest.approx(wait + 0.2)


def test_a_shorter_retry_after_never_shortens_a_pause():
    limiter, clock, _ = limiter_at(10)
    limiter.on_throttled(10.0)
    clock.now = 1.0
    limiter.on_throttled(1.0)
    assert limiter.reserve() == pytest.approx(9.0)


# --- the climb -------------------------------------------------------------------------------


def test_with_a_known_limit_each_success_climbs_by_climb():
    limiter, clock, _ = limiter_at(100, start=10)
    successes(limiter, clock, [1.0] * 50)  # per success, however close together
    assert limiter.rate == pytest.approx(FILL * 10 * (1 + CLIMB) ** 50)


def test_before_anything_is_measured_a_cut_rate_seeks_faster():
    limiter, clock, _ = limiter_at(100)
    limiter.on_throttled(None)  # a first cut: 50/s, nothing known
    successes(limiter, clock, [1.0] * 10)
    assert limiter.rate == pytest.approx(FIRST_CUT * 100 * (1 + SEEK) ** 10)
    assert limiter.known is None


def test_before_any_429_with_nothing_known_the_rate_stays_where_it_is():
    limiter, clock, _ = limiter_at(10)
    limiter.lead(2)  # a key's ceiling of 20: room to climb, were it climbing
    successes(limiter, clock, [1.0] * 20)
    limiter.lead(2)
    assert limiter.rate == 10


@pytest.mark.parametrize("start", [None, 10.0])
def test_the_climb_stops_at_the_ceiling(start):
    limiter, clock, _ = limiter_at(10, start=start)
    limiter.on_throttled(None)
    successes(limiter, clock, [2.0] * 5000)
    assert limiter.rate == 10.0


# --- the leader of a grid (several processes on a key) ----------------------------------


def test_on_a_grid_the_leaders_climb_waits_for_the_next_sync_and_counts_every_member():
    limiter, clock, _ = limiter_at(10, start=8)
    limiter.lead(2)
    assert (limiter.members, limiter.anchor, limiter.rate) == (2, 0.0, pytest.approx(FILL * 8))
    successes(limiter, clock, [0.5, 0.6, 0.7])
    assert limiter.rate == pytest.approx(FILL * 8)  # the followers could not move with it yet
    clock.now = 1.23
    limiter.lead(2)  # the next sync
    assert limiter.rate == pytest.approx(FILL * 8 * (1 + CLIMB * 2) ** 3)  # each success stands for 2


def test_a_rate_change_on_a_grid_reanchors_by_whole_rounds_and_voids_slots_taken():
    limiter, clock, _ = limiter_at(10, start=8)
    limiter.lead(3)
    old_round = 3 / limiter.rate
    assert limiter.reserve() == 0.0 and limiter.reserve() == pytest.approx(old_round)  # every 3rd slot
    generation = limiter.generation
    successes(limiter, clock, [0.5])
    clock.now = 1.23
    limiter.lead(3)
    # the new grid starts at the old one's last round start: every member keeps its place
    rounds = limiter.anchor / old_round
    assert rounds == pytest.approx(round(rounds)) and 1.23 - old_round < limiter.anchor <= 1.23
    assert limiter.generation == generation + 1  # waiters take new slots on the new grid
    new_round = 3 / limiter.rate
    assert limiter.reserve() == pytest.approx(limiter.anchor + new_round - 1.23)  # the next round's
    clock.now = 2.5
    limiter.on_throttled(0.0)  # a 429 on a grid: pauses at least this process's own spacing
    assert limiter.reserve() >= 3 / limiter.rate - 1e-9


def test_a_decision_on_a_grid_reanchors_and_a_follower_does_not_decide():
    leader, clock, _ = limiter_at(10, start=8)
    leader.lead(2)
    old_round = 2 / leader.rate
    clock.now = 1.7
    leader.on_throttled(None)  # no success seen: thin evidence over the 1.7 s since it started
    assert leader.rate == pytest.approx(min(FIRST_CUT * FILL * 8, (0 + 1) / 1.7)) and leader.throttled == 1
    assert leader.measurements == 0 and leader.known == 8  # nothing measured: the learned limit stays
    rounds = leader.anchor / old_round  # re-anchored at the last round start
    assert rounds == pytest.approx(round(rounds)) and 1.7 - old_round < leader.anchor <= 1.7
    follower, _, _ = limiter_at(10)
    follower.follow(6.0, 0.0, 2, 1, 8.0)
    assert (follower.leading, follower.rate, follower.known) == (False, 6.0, 8.0)
    follower.on_throttled(None)
    follower.throttled_elsewhere()
    follower.on_success()
    assert follower.rate == 6.0 and follower.throttled == 1  # the leader decides for the key


def test_a_rate_change_at_a_round_start_never_reuses_the_slot_just_used():
    """The leader re-anchors at the last round start; its request there went out already:
    its next slot is a round on, not that one again."""
    limiter, clock, _ = limiter_at(10, start=8)
    limiter.lead(3)
    assert limiter.reserve() == 0.0
    limiter.used(0.0)  # sent at the round's start
    limiter.on_success()  # at that same moment on the virtual clock, then a sync
    limiter.lead(3)
    assert limiter.anchor == 0.0 and limiter.rate > FILL * 8  # the climb taken: a new grid from 0
    assert limiter.reserve() == pytest.approx(3 / limiter.rate)


def test_a_newcomer_on_the_key_regrids_no_sooner_than_a_spacing_after_the_last_request():
    limiter, clock, _ = limiter_at(10)
    assert limiter.reserve() == 0.0
    limiter.used(0.0)
    clock.now = 0.05
    limiter.lead(2)  # a second process joined: the key's grid of 2
    assert limiter.anchor == pytest.approx(0.1)  # one spacing (1/10 s) after the request at 0
    assert limiter.reserve() == pytest.approx(0.05)  # the leader's place, the grid's first slot


def test_on_a_grid_the_measure_counts_the_others_accepted_over_the_whole_window():
    """Key-wide: the leader's own successes over the whole window (the others' fill the time
    before its first), plus the others' rate from the totals they published on the board;
    before the board said, the others are counted as this one."""
    leader, clock, _ = limiter_at(10, start=8)
    leader.lead(2)
    for moment, total in [(0.0, 0), (1.0, 4), (2.0, 8), (3.0, 12)]:  # the others: 4/s
        clock.now = moment
        leader.note_others(total)
    successes(leader, clock, [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    before = leader.rate
    clock.now = 3.0
    leader.on_throttled(None)
    window = WINDOW_SECONDS  # 3 s: longer than 8 requests at the key's rate
    assert leader.known == pytest.approx(6 / window + 12 / 3.0) and leader.measurements == 1
    assert leader.rate == pytest.approx(
        max(BELOW_ACCEPTED * min(leader.known, before), (1 - MAX_CUT) * before)
    )
    unseen, clock, _ = limiter_at(10, start=8)
    unseen.lead(2)
    successes(unseen, clock, [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    unseen.on_throttled(None)
    assert unseen.known == pytest.approx(2 * 6 / window)


def test_far_under_the_last_measure_the_rate_climbs_back_at_seek():
    limiter, clock, _ = limiter_at(100, start=10)
    clock.now = 5.0
    limiter.on_throttled(None)  # nothing in the window: thin evidence, 1 request in the second
    assert limiter.rate == pytest.approx(1.0) and limiter.known == 10
    steps = math.ceil(math.log(NEAR * 10 / 1.0) / math.log(1 + SEEK))
    successes(limiter, clock, [6.0] * steps)  # under NEAR x known: SEEK a success
    assert limiter.rate == pytest.approx((1 + SEEK) ** steps) and limiter.rate >= NEAR * 10
    successes(limiter, clock, [6.0])  # near it again: CLIMB
    assert limiter.rate == pytest.approx((1 + SEEK) ** steps * (1 + CLIMB))


# --- acquire -------------------------------------------------------------------------------


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


def test_a_new_grid_while_waiting_voids_the_slot_taken():
    limiter, clock, waiter = limiter_at(1)
    limiter.acquire()  # alone: the next slot is at 1.0
    # at 0.25 s a leader says: 2 processes at 1/s key-wide on a grid from 0.5, this one second
    waiter.during[1] = lambda: limiter.follow(1.0, 0.5, 2, 1, None)
    assert limiter.acquire() is True
    assert clock.now == pytest.approx(1.5)  # the grid's first odd slot, not the old one at 1.0
    assert limiter.acquire() is True
    assert clock.now == pytest.approx(3.5)  # every 2nd slot of the leader's grid


def test_before_the_board_says_successes_before_a_newcomer_count_at_the_share_of_their_time():
    """Alone, the leader had every slot; after a second process joins, half. Before the
    board has the newcomer's counts, the key-wide measure counts the leader's successes
    before the join once and those after it twice: a 10/s key reads 10/s, not 20/s (each
    success taken as half the key's, as it did before this was fixed)."""
    leader, clock, _ = limiter_at(100, start=10)
    successes(leader, clock, [0.1 * i for i in range(1, 31)])  # 10/s alone for 3 s
    leader.lead(2)  # a newcomer at 3.0: the leader's share is every other slot
    successes(leader, clock, [3.2, 3.4, 3.6])  # 5/s of its own
    leader.on_throttled(None)
    window = WINDOW_SECONDS
    own_before = sum(1 for i in range(1, 31) if 0.1 * i >= 3.6 - window - 1e-9)
    assert leader.known == pytest.approx((own_before + 2 * 3) / window)
    assert leader.known == pytest.approx(10, rel=0.05)


def test_on_a_grid_a_429_within_a_window_of_a_measurement_confirms_it_and_cuts_by_the_margin():
    """Problem B: a slow key's window on a grid is long (8 key requests: 24 s at 1/s for 3
    processes); a 429 a few seconds after a measurement would count a window holding that
    decision's pause and cut and the start's slack, read low, and make a low reading the
    known limit (then climbed back at CLIMB: minutes). It confirms the measurement instead."""
    limiter, clock, _ = limiter_at(10, start=1.0)
    limiter.lead(3)
    limiter.note_others(0)
    successes(limiter, clock, [1.0, 4.0, 7.0])
    clock.now = 8.0
    limiter.note_others(5)
    limiter.on_throttled(None)  # 3 own + the others' 5 in 8 s: the key accepted 1/s
    assert limiter.measurements == 1 and limiter.known == pytest.approx(1.0)
    measured_rate = limiter.rate
    successes(limiter, clock, [10.0])
    clock.now = 13.0  # 5 s on: far younger than the window
    limiter.on_throttled(None)
    assert limiter.measurements == 1  # not measured again
    assert limiter.rate == pytest.approx(BELOW_ACCEPTED * measured_rate)  # the margin off the rate
    # the limit: over the new rate, and not over the measurement it confirms
    assert limiter.rate <= limiter.known <= 1.0
    window = limiter._window()  # at the rate in force now
    successes(limiter, clock, [14.0 + 3.0 * i for i in range(int(window / 3.0))])
    clock.now = 8.0 + window + 1.0
    limiter.note_others(25)
    limiter.on_throttled(None)  # a window after the measurement: measured again
    assert limiter.measurements == 2


def test_alone_a_429_soon_after_a_measurement_measures_again():
    """Alone the window counts from its first success (no start's slack): every 429 measures."""
    limiter, clock, _ = limiter_at(10, start=10)
    successes(limiter, clock, [0.1 * i for i in range(1, 21)])
    clock.now = 2.5
    limiter.on_throttled(None)
    successes(limiter, clock, [3.6 + 0.1 * i for i in range(10)])
    clock.now = 4.6
    limiter.on_throttled(None)
    assert limiter.measurements == 2

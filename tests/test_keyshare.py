"""Processes sharing a key share one grid of slots (`polyledger.polygon.keyshare`): the first
joined leads, the others take their places in each round of its grid; a follower's 429 makes
the leader decide; the key's limit is stored (in the ledger: `LedgerBoard`) for later runs,
by a digest of the key, never the key. Virtual clocks: nothing here sleeps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support import API_KEY

from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.polygon.keyshare import (
    ALIVE_SECONDS,
    LEARNED_FOR_SECONDS,
    SYNC_SECONDS,
    KeyShare,
    LedgerBoard,
    Member,
    MemoryBoard,
    key_id,
    starting_rate,
)
from polyledger.polygon.ratelimit import FILL, RateLimiter
from polyledger.storage import BarStore

BASE_URL = "http://127.0.0.1:9"  # never contacted: nothing here sends a request


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def shares_on(board: MemoryBoard, clock: Clock, count: int, rate: float = 1.0) -> list[KeyShare]:
    """`count` processes with --rate `rate` joining the board 0.1 s apart, then one sync
    round (the leader first, as its grid is the one the others take places in)."""
    shares = []
    for index in range(count):
        clock.now = 0.1 * index
        share = KeyShare(board, f"p{index}", RateLimiter(rate, clock=clock))
        share.sync()
        shares.append(share)
    clock.now = 1.0
    for share in shares:
        share.sync()
    return shares


def gaps(moments: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(moments)]


@pytest.mark.parametrize("members", [2, 3])
def test_processes_on_a_key_of_one_a_second_take_slots_a_second_apart_never_together(members):
    clock = Clock()
    shares = shares_on(MemoryBoard(clock), clock, members)
    limiters = [share.limiter for share in shares]
    assert [(lim.leading, lim.members, lim.index) for lim in limiters] == [
        (index == 0, members, index) for index in range(members)
    ]
    assert {(lim.rate, lim.anchor) for lim in limiters} == {(1.0, limiters[0].anchor)}  # one grid
    slots = {index: [clock.now + lim.reserve() for _ in range(4)] for index, lim in enumerate(limiters)}
    for own in slots.values():
        assert gaps(own) == pytest.approx([members * 1.0] * 3)  # every members-th slot
    every = sorted(itertools.chain.from_iterable(slots.values()))
    assert gaps(every) == pytest.approx([1.0] * (len(every) - 1))  # none together, none skipped


def test_the_leaders_climb_reaches_the_followers_at_their_next_sync():
    clock = Clock()
    leader, follower = shares_on(MemoryBoard(clock), clock, 2, rate=10.0)
    leader.limiter.on_throttled(None)  # a first cut: the key at 10/s halves, then seeks back
    clock.now = 2.0
    for share in (leader, follower):
        share.sync()
    cut = leader.limiter.rate
    assert follower.limiter.rate == cut
    for _ in range(3):
        leader.limiter.on_success()
    assert leader.limiter.rate == cut  # waits for the sync, so the others move with it
    clock.now = 3.0
    leader.sync()
    assert leader.limiter.rate > cut and follower.limiter.rate == cut
    follower.sync()
    assert (follower.limiter.rate, follower.limiter.anchor) == (leader.limiter.rate, leader.limiter.anchor)


def test_a_followers_429_makes_the_leader_decide_at_its_next_sync():
    clock = Clock()
    leader, follower = shares_on(MemoryBoard(clock), clock, 2, rate=10.0)
    clock.now = 1.5
    follower.limiter.on_throttled(None)
    assert follower.limiter.rate == leader.limiter.rate == 10.0  # a follower does not decide
    clock.now = 2.0
    follower.sync()  # publishes its 429s
    leader.sync()  # sees them: the key is over its limit, as if refused itself
    assert leader.limiter.rate == 5.0 and leader.limiter.throttled == 0
    follower.sync()
    assert follower.limiter.rate == 5.0


def test_a_measured_limit_is_kept_for_a_newcomer_for_a_day():
    clock = Clock()
    board = MemoryBoard(clock)
    (alone,) = shares_on(board, clock, 1)
    assert starting_rate(board) is None  # nothing measured yet
    alone.limiter.adopt(0.5)  # as after a measurement: the leader's `known`
    alone.sync()
    assert starting_rate(board) == 0.5
    clock.now += LEARNED_FOR_SECONDS + 1  # plans change: probed again
    assert starting_rate(board) is None


# --- the board in the ledger -------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def test_the_ledger_board_round_trip_converts_anchors_and_ignores_stale_members(ledger):
    wall, monotonic = Clock(1_800_000_000.0), Clock(5_000.0)  # epoch seconds; seconds since boot
    board = LedgerBoard(ledger, "k1", wall=wall, monotonic=monotonic)
    board.publish("run-a", 2.0, 5_010.0, None, throttled=3)
    wall.now += 0.5
    monotonic.now += 0.5
    board.publish("run-b", 2.0, 5_011.0, 1.8)
    assert board.members() == [
        Member("run-a", 1_800_000_000.0, 2.0, pytest.approx(5_010.0), 3),
        Member("run-b", 1_800_000_000.5, 2.0, pytest.approx(5_011.0), 0),
    ]
    stored = ledger.query("SELECT member, anchor FROM key_members ORDER BY member")
    # in the ledger on the wall clock, which hosts share; a monotonic clock is this host's own
    assert [(m, float(a)) for m, a in stored] == [
        ("run-a", pytest.approx(1_800_000_010.0)),
        ("run-b", pytest.approx(1_800_000_011.0)),
    ]
    other_host = LedgerBoard(ledger, "k1", wall=wall, monotonic=Clock(70.0))  # booted at another time
    # the same moments, 9.5 s and 10.5 s from now, on that host's monotonic clock
    assert [m.anchor for m in other_host.members()] == [pytest.approx(79.5), pytest.approx(80.5)]
    assert LedgerBoard(ledger, "k2", wall=wall, monotonic=monotonic).members() == []  # another key
    assert board.learned() == 1.8
    wall.now += ALIVE_SECONDS
    monotonic.now += ALIVE_SECONDS
    board.publish("run-b", 2.0, 5_011.0, None)
    assert [m.member for m in board.members()] == ["run-b"]  # run-a not seen for too long
    board.leave("run-b")
    assert board.members() == [] and board.learned() == 1.8  # the limit outlives the runs...
    wall.now += LEARNED_FOR_SECONDS
    assert board.learned() is None  # ...for a day


def test_the_ledger_names_the_key_by_a_digest_never_the_key(ledger, tmp_path):
    name = key_id(API_KEY, BASE_URL)
    assert name == key_id(API_KEY, BASE_URL + "/") and name != key_id(API_KEY, "https://api.example")
    assert API_KEY not in name
    board = LedgerBoard(ledger, name)
    board.publish("run-a", 2.0, 0.0, 1.5)
    ledger.close()
    held = b"".join(path.read_bytes() for path in tmp_path.glob("ledger.db*"))
    assert name.encode() in held  # the files read hold the board...
    assert API_KEY.encode() not in held  # ...and not the key


def test_a_later_run_on_the_key_starts_at_the_limit_an_earlier_run_learned(ledger, tmp_path):
    options = RunOptions(rate=100.0, workers=2)
    earlier = Run(ledger, BarStore(tmp_path / "data"), api_key=API_KEY, base_url=BASE_URL, options=options)
    earlier._join_key()
    earlier.limiter.adopt(3.0)  # as if it had measured the key's limit
    earlier.keyshare.sync()
    earlier._leave_key()

    later = Run(ledger, BarStore(tmp_path / "data"), api_key=API_KEY, base_url=BASE_URL, options=options)
    later._join_key()
    assert (later.limiter.known, later.limiter.rate) == (3.0, pytest.approx(FILL * 3.0))
    other_key = Run(
        ledger, BarStore(tmp_path / "data"), api_key="pk_other", base_url=BASE_URL, options=options
    )
    other_key._join_key()
    assert (other_key.limiter.known, other_key.limiter.rate) == (None, 100.0)
    # while a run is on the key, a newcomer follows it rather than the stored figure
    alongside = Run(ledger, BarStore(tmp_path / "data"), api_key=API_KEY, base_url=BASE_URL, options=options)
    later.limiter.lead(1)
    later.keyshare.sync()
    alongside._join_key()
    assert (alongside.limiter.leading, alongside.limiter.members, alongside.limiter.index) == (False, 2, 1)
    assert alongside.limiter.rate == later.limiter.rate


# Staggered joins (processes starting 0.5-5 s apart, as real ones do): a join must not put
# two requests closer than the key's spacing, nor be taken for evidence of a lower limit.


def test_a_newcomer_takes_no_slot_until_the_leader_has_made_room_for_it():
    clock = Clock()
    board = MemoryBoard(clock)
    first, second = shares_on(board, clock, 2)  # a key of 1/s: the grid of two at 1.0
    leader = first.limiter
    clock.now = leader.anchor + 1.8  # just before a slot that is the leader's on that grid
    newcomer = KeyShare(board, "p2", RateLimiter(1.0, clock=clock))
    newcomer.sync()  # reads the leader's grid of two (it has not seen the newcomer yet)
    generation, joined = newcomer.limiter.generation, clock.now
    # a slot on that grid is another's: none due before the newcomer reads the next grid
    assert clock.now + newcomer.limiter.reserve() > joined + SYNC_SECONDS
    clock.now = joined + 0.2
    first.sync()  # the leader makes room: a grid of three
    second.sync()
    clock.now = joined + SYNC_SECONDS
    newcomer.sync()
    assert newcomer.limiter.generation != generation  # the slot taken on the old grid is void
    assert (newcomer.limiter.rate, newcomer.limiter.anchor, newcomer.limiter.members) == (
        leader.rate,
        leader.anchor,
        3,
    )
    own = clock.now + newcomer.limiter.reserve()
    assert round((own - leader.anchor) * leader.rate) % 3 == 2  # its own place in each round


def test_the_leaders_new_grid_keeps_the_keys_spacing_from_a_followers_last_request():
    clock = Clock()
    board = MemoryBoard(clock)
    first, second = shares_on(board, clock, 2)
    leader, follower = first.limiter, second.limiter
    # on the grid of two at 1/s the leader sends at even slots, the follower at odd ones
    clock.now = leader.anchor
    sent = clock.now + leader.reserve()
    leader.used(sent)
    clock.now = sent + 1.0
    sent_by_follower = clock.now + follower.reserve()
    follower.used(sent_by_follower)
    clock.now = sent_by_follower + 0.3  # a third process joins; the leader regrids at its sync
    KeyShare(board, "p2", RateLimiter(1.0, clock=clock)).sync()
    first.sync()
    assert leader.members == 3
    assert clock.now + leader.reserve() >= sent_by_follower + 1.0 / leader.rate - 1e-9


def test_a_429_on_a_grid_keeps_this_processs_next_slot():
    clock = Clock()
    first, second = shares_on(MemoryBoard(clock), clock, 2, rate=10.0)
    follower = second.limiter
    clock.now = 1.2
    slot = clock.now + follower.reserve()
    follower.used(slot)
    clock.now = slot + 0.04  # the answer, a round trip later: 429, Retry-After: 0
    follower.on_throttled(0.0)
    following = clock.now + follower.reserve()
    # its next slot on the grid, one of its spacings after the refused one: not a round later
    assert following == pytest.approx(slot + follower.members / follower.rate)


def test_a_followers_429_at_a_rate_the_leader_already_cut_is_not_decided_again():
    clock = Clock()
    leader, follower = shares_on(MemoryBoard(clock), clock, 2, rate=10.0)
    clock.now = 1.2
    leader.limiter.on_throttled(None)  # the leader cuts: 10 -> 5
    assert leader.limiter.rate == 5.0
    clock.now = 1.5
    follower.limiter.on_throttled(None)  # still at 10/s: it follows the cut at its next sync
    clock.now = 2.0
    leader.sync()
    follower.sync()  # publishes its 429, at 10/s
    clock.now = 3.0
    leader.sync()
    assert leader.limiter.rate == 5.0  # not 2.5: the follower's 429 is what the cut was for

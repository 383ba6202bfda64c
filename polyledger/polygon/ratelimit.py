"""One rate limiter for the whole run, shared by every worker thread.

Requests are spaced on a schedule. The limiter holds the *key's* rate: alone on a key, a
process uses all of it; processes sharing a key (several runs on one ledger) share one grid
of slots spaced 1 / rate from a common `anchor`, each taking every `members`-th slot
(`polyledger.polygon.keyshare` keeps them in step through the ledger). Their requests
reach the server evenly spaced, as one process's would, so even a server whose bucket
holds a single request (a few requests a minute) refuses none of them.

How the rate is found (by the process leading the key; the others follow it):

- Known key: a limit learned earlier (the ledger keeps it) or measured in this run. The
  rate is `FILL` of it, and the limit creeps up by `PROBE` a success, so a raised limit is
  found at the cost of one 429 in a few hundred requests.
- A 429 means the server's bucket was empty when it arrived. Two 429 decisions with K
  successes between them (key-wide), the bucket empty at both, measure the limit: K / the
  time requests flowed between them. With too few successes between them to measure, the
  rate halves, and never stays above what the interval allows: K + 1 requests in it.
- A window that spans a climb from under the limit reads low (on a slow key shared by
  several hosts it is minutes long): a rate that held since the last decision for
  HOLD_SECONDS and HOLD_REQUESTS key-wide without a 429 (more than a burst lets through
  above a limit) counts as accepted. A window younger than its length (on a grid, the
  run's first seconds) holds the start's slack: no margin is taken off what it read, but
  a 429 always cuts to at most 0.9 of the rate (that window may hold the server's first
  bucket too).
- On a grid a window is long (8 key requests: 24 s at 1/s for 3 processes). A 429 within a
  window of the last measurement, with no other cut between, at a rate the reading would
  cut by at most MAX_CUT, would count a window holding that decision's pause and cut, and
  the start's slack: it reads low (0.6-0.8 of a 1/s key) and, made the known limit, is
  climbed back from at CLIMB, minutes. It confirms the measurement instead: the limit is
  under the rate that drew it and over what the key accepted; the rate is cut by the
  margin (BELOW_ACCEPTED) and the limit known is the higher of the reading and that rate.
  The next measurement waits for a window after the last one. Alone, the window counts
  from its first success (no start's slack): every 429 measures.
- Nothing refused yet: the rate is `--rate`. After a first cut, with nothing measured, it
  climbs by `SEEK` a second until the next 429 measures the limit.
- At most one decision per second however many 429s arrive together; everyone pauses for
  Retry-After when sent; a 429 cancels the slots already handed out.

The constants were chosen with `polyledger.testing.ratesim`, which replays hosts sharing a
key on a virtual clock (`bench/ratelimit.py --simulate` prints the table).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

FILL = 0.95  # share of a learned limit a run starts at
BELOW_ACCEPTED = 0.9  # after a 429: this share of what the server accepted
CLIMB = 0.001  # the rate won back per success: 10% in ~100 requests
SEEK = 0.05  # the same before anything was measured: 2x in ~14 requests
FIRST_CUT = 0.5  # a 429 with too few successes in the window to measure anything
MAX_CUT = 0.4  # a decision with evidence takes at most this share off
NEAR = 0.8  # under this share of the last measure, the rate climbs at SEEK
MIN_MEASURED = 4  # successes in the window for a measurement
PAUSE_WEIGHT = 0.5  # share of a Retry-After pause not counted as time requests flowed
# successes counted to estimate what the server accepts: the last 3 s, or the time of
# WINDOW_REQUESTS requests at the current rate when that is longer
WINDOW_SECONDS = 3.0
WINDOW_REQUESTS = 8
# a rate in force this long, for this many requests key-wide, without a 429 is one the key
# allows (more than a server's burst could have let through above its limit)
HOLD_SECONDS = 10.0
HOLD_REQUESTS = 2
# a newcomer on a grid takes no slot until the leader has made room for it: at most this long
# (two syncs of `keyshare`; the leader makes room at its next sync)
JOIN_HOLD = 2.0


def _wait_on(condition: threading.Condition, timeout: float) -> None:
    condition.wait(timeout)


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        min_rate: float = 0.01,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Condition, float], object] = _wait_on,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate  # this process's `--rate`; the key's rate is at most members x it
        self.min_rate = min(min_rate, rate)
        self.burst = max(1.0, burst)
        # the key's limit (requests/s) as learned (`start`, from the ledger) or measured
        self.known: float | None = start
        self.rate = rate if start is None else self._bounded(FILL * start, 1)
        self.measurements = 0  # limits measured in this run
        self._clock = clock
        # how acquire() waits (lock held, released while waiting): tests pass a wait driven
        # by the same virtual clock, so the real acquire runs without real time
        self._wait = wait
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # slots taken were cancelled
        self.generation = 0  # times the slots taken were cancelled (a 429, a new grid)
        now = clock()
        self._started = now
        self._next_slot = now
        self._last_used = float("-inf")  # the slot of the last request sent
        self._paused_until = 0.0
        self._decided_at: float | None = None  # the last 429 decision
        self._measured_at: float | None = None  # the last decision that measured the limit
        self._rate_since = now  # when the rate in force was set
        self._ok_at_rate = 0  # requests accepted key-wide since (this process's times members)
        self._held: float | None = None  # the highest rate in force HOLD_SECONDS since the last 429
        self._successes: deque[float] = deque()
        self._pauses: deque[tuple[float, float]] = deque()  # (from, to): Retry-After pauses
        self._others: deque[tuple[float, int]] = deque()  # (when, the others' accepted so far)
        self.succeeded = 0  # requests accepted
        self._target: float | None = None  # on a grid: the climbed rate, taken at the next sync
        self.throttled = 0  # 429s seen
        # the grid shared with the other processes on the key (`keyshare`)
        self.members = 1
        self.index = 0
        self.leading = True
        self.anchor = now
        self._gridded_at = now  # when `members` last changed, and what it was before
        self._members_before = 1
        # a follower just joined: the leader's grid it read (rate, anchor), and until when it
        # takes no slot unless the leader publishes another grid
        self._joining: tuple[float, float] | None = None
        self._joining_until = 0.0

    def _bounded(self, rate: float, members: int) -> float:
        return max(self.min_rate, min(self.ceiling * members, rate))

    @property
    def own_rate(self) -> float:
        """This process's requests per second: its share of the key's rate."""
        return self.rate / self.members

    def reserve(self) -> float:
        """Take the next slot; returns how long the caller must wait before using it."""
        with self._lock:
            return self._reserve(self._clock())

    def _reserve(self, now: float) -> float:
        if self.members > 1:
            return self._reserve_on_grid(now)
        # slots left unused may be caught up in a burst, but never more requests at once
        # than a second's worth (a server's bucket holds about a second of its limit): at a
        # few requests a minute a burst of 4 would be 3 refusals
        catch_up = min((self.burst - 1) / self.rate, max(0.0, 1.0 - 1.0 / self.rate))
        earliest = max(now - catch_up, self._paused_until)
        slot = max(self._next_slot, earliest)
        self._next_slot = slot + 1.0 / self.rate
        return max(0.0, slot - now)

    def _reserve_on_grid(self, now: float) -> float:
        # the first slot of this process (j = index mod members) not before `earliest`;
        # no catch-up on a grid: a slot left unused is another process's room
        slot = self._own_slot(max(now, self._paused_until, self._next_slot, self._joining_until))
        self._next_slot = slot + 1.0 / self.rate  # the next call snaps to this process's next slot
        return max(0.0, slot - now)

    def _own_slot(self, earliest: float) -> float:
        """The first slot of this process's on its grid not before `earliest`."""
        spacing = 1.0 / self.rate
        j = math.ceil((earliest - self.anchor) / spacing - 1e-9)
        j += (self.index - j) % self.members
        return self.anchor + j * spacing

    def _set_rate(self, rate: float, now: float) -> None:
        """A new key rate. On a grid, the leader's new grid starts at the next slot of the
        old one (the followers, told about a second later, land on the same slots then)."""
        rate = self._bounded(rate, self.members)
        if rate == self.rate:
            return
        held = now - self._rate_since >= HOLD_SECONDS and self._ok_at_rate >= HOLD_REQUESTS
        if rate > self.rate and held:
            # climbing from a rate that held without a 429 (each decision restarts the count)
            self._held = max(self._held or 0.0, self.rate)
        self._rate_since, self._ok_at_rate = now, 0
        if self.members > 1:
            # whole rounds, so every process keeps its place; slots taken on the old grid
            # are void (waiters take new ones), as on the others' when they follow.
            # the new grid starts at the last round's start: the slots ahead move by the
            # change's share of less than a round, and never closer than a spacing to this
            # process's last request
            round_ = self.members / self.rate
            self.anchor += max(0, math.floor((now - self.anchor) / round_)) * round_
            self._next_slot = max(now, self._last_used + 1.0 / rate)
            self.generation += 1
            self._changed.notify_all()
        self.rate = rate

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
                        if stop is not None and stop.is_set():
                            return False
                        self._used(due)
                        return True
                    # in short steps, to notice `stop` without a thread of its own
                    self._wait(self._changed, min(remaining, 0.25))
                    if stop is not None and stop.is_set():
                        return False

    def on_success(self) -> None:
        with self._lock:
            now = self._clock()
            self.succeeded += 1
            self._ok_at_rate += self.members
            self._successes.append(now)
            self._forget_old_successes(now)
            if self.leading and (self._decided_at is not None or self.known is not None):
                # after a first 429, the rate creeps back up by a share per success (each
                # stands for `members` on the key): one probe above the limit costs one 429
                # in about a hundred requests, on a key of any size. On a grid the new rate
                # waits for the next sync, so the others move with it
                # nothing measured yet (a cut on thin evidence): faster, until a 429 measures
                # and after a cut far under the last measure, until back near it
                near = self.known is not None and self.rate >= NEAR * self.known
                climb = CLIMB if near else SEEK
                target = (self._target or self.rate) * (1.0 + climb * self.members)
                if self.members > 1:
                    self._target = target
                else:
                    self._set_rate(target, now)

    def _window(self) -> float:
        return max(WINDOW_SECONDS, WINDOW_REQUESTS * self.members / self.rate)

    def _forget_old_successes(self, now: float) -> None:
        cutoff = now - self._window()
        while self._successes and self._successes[0] < cutoff:
            self._successes.popleft()
        while self._pauses and self._pauses[0][1] < cutoff:
            self._pauses.popleft()

    def on_throttled(self, retry_after: float | None) -> None:
        """The server said 429: slow everyone down, and pause for Retry-After if given."""
        with self._lock:
            self.throttled += 1
            now = self._clock()
            if self.leading:
                self._decide(now)
            spacing = self.members / self.rate  # this process's own spacing
            pause = max(0.0, retry_after) if retry_after is not None else spacing
            until = now + min(pause, 300.0)
            if until > self._paused_until:
                self._pauses.append((max(now, self._paused_until), until))
                self._paused_until = until
            # slots taken at the old rate are void: the schedule starts again after the pause,
            # and never sooner than one spacing at the new rate (a short Retry-After must not
            # let each 429 release the next request early)
            # (on a grid: one of this process's spacings after its last request, not after the
            # answer, which came a round trip later: that would skip its next slot, a round)
            used = self._last_used
            after = used if self.members > 1 and float("-inf") < used <= now else now
            self._next_slot = max(self._paused_until, after + self.members / self.rate)
            self.generation += 1
            self._changed.notify_all()

    def throttled_elsewhere(self) -> None:
        """A process following this one on the key was refused: the key is over its limit
        as surely as if this process had been; decide, without pausing this one."""
        with self._lock:
            if self.leading:
                self._decide(self._clock())

    def _decide(self, now: float) -> None:
        last = self._decided_at
        if last is not None and now - last < 1.0:
            return  # one decision per burst of 429s
        self._decided_at = now
        self._forget_old_successes(now)  # after a long pause, old successes say nothing
        # what the key accepted: successes over the window (key-wide: with the others'),
        # counted over at least a second
        own = len(self._successes)
        # alone: from the first success in the window; on a grid the others' successes
        # count too, so the whole window (or the time since this process started)
        if self.members == 1:
            span = min(self._window(), now - self._successes[0]) if own else 0.0
        else:
            span = min(self._window(), now - self._started)
        # a Retry-After pause sent nothing, but the server's bucket refilled meanwhile, up to
        # what it holds: counted as half flowing, the figure errs by at most a third either
        # way whether the bucket holds more or less than the pause
        paused = sum(max(0.0, min(end, now) - max(start, now - span)) for start, end in self._pauses)
        flowed = max(1.0, span - PAUSE_WEIGHT * paused)
        others = self._others_rate(now - span)
        if others is None:
            # on a grid, before the board said: every process as this one, with the share of
            # the slots it had then (before the last newcomer, it may have had them all: one
            # process's window counted twice read a 10/s key as 20/s right after a join)
            on_grid = sum(1 for at in self._successes if at > self._gridded_at)
            seen = (own - on_grid) * self._members_before + on_grid * self.members
        else:
            seen = own + others * flowed  # key-wide successes over the window, about
        accepted = seen / flowed
        # a window that spans a climb from under the limit reads low; a rate that held
        # without a 429 long enough to outlast a burst is one the key allows
        from_held = self._held is not None and self._held > accepted
        if from_held:
            accepted = self._held
        self._held, self._rate_since, self._ok_at_rate = None, now, 0
        measured = self._measured_at
        if (
            measured is not None
            and self.members > 1
            and self.known is not None
            and now - measured < self._window()
            and accepted >= (1.0 - MAX_CUT) * self.rate
        ):
            # a 429 within a window of the last measurement (on a grid), no other cut since,
            # a reading that would cut by at most MAX_CUT: its window spans that decision's
            # pause and cut, and the start's slack, and reads low. It confirms the
            # measurement, a little high: the limit is under the rate that drew this 429
            # and over what the key accepted
            rate = BELOW_ACCEPTED * self.rate
            self.known = max(accepted, rate)
        elif last is None and self.known is None:
            # a first 429: what came through so far was mostly the server's initial burst,
            # which says nothing of its rate; halve, and measure at the next one
            rate = FIRST_CUT * self.rate
            self._measured_at = None
        elif seen >= MIN_MEASURED:
            self.known = accepted
            self.measurements += 1
            self._measured_at = now
            # at most MAX_CUT off at once: a window miscounted low (the others' counts lag
            # a sync) costs a second more of 429s, not minutes far under the limit
            # a window not yet full (on a grid: the run is younger than it) holds the start's
            # slack too: what it read is under the limit already, no margin taken off it
            full = span >= self._window() - 1e-9 or self.members == 1
            below = BELOW_ACCEPTED if full or from_held else 1.0
            rate = max(below * min(accepted, self.rate), (1.0 - MAX_CUT) * self.rate)
            # but a 429 always cuts: a young window may hold the server's first bucket too
            rate = min(rate, BELOW_ACCEPTED * self.rate)
        else:
            # too few successes to say: halve, and never stay above what the window let through
            rate = min(FIRST_CUT * self.rate, (seen + 1) / flowed)
            self._measured_at = None  # the rate is no longer the measurement's
        self._target = None
        self._set_rate(rate, now)

    def _others_rate(self, since: float) -> float | None:
        """The others' accepted requests/s on the key from about `since`, from their
        counts on the board (read at each sync, so up to a sync old); 0 alone."""
        if self.members == 1:
            return 0.0
        if len(self._others) < 2:
            return None
        before = [(at, total) for at, total in self._others if at <= since]
        at, total = before[-1] if before else self._others[0]
        latest_at, latest = self._others[-1]
        if latest_at - at < 0.5:
            return None
        return max(0, latest - total) / (latest_at - at)

    def note_others(self, total: int) -> None:
        """The others on the key have had `total` requests accepted so far (a sync)."""
        with self._lock:
            now = self._clock()
            self._others.append((now, total))
            while len(self._others) > 2 and self._others[1][0] < now - 2 * self._window():
                self._others.popleft()

    def adopt(self, known: float) -> None:
        """Start at a limit learned earlier on this key (the ledger's)."""
        with self._lock:
            self.known = known
            self.rate = self._bounded(FILL * known, self.members)

    def lead(self, members: int) -> None:
        """This process sets the key's rate for `members` processes (itself first)."""
        with self._lock:
            now = self._clock()
            if not self.leading:
                self._others.clear()  # counts read as a follower measured another leader's key
            if members != self.members or not self.leading:
                # the new grid starts no sooner than a spacing after this one's last request,
                # at a slot that was this process's on the grid the others are still on (until
                # their next sync): a slot of the key's lattice nobody else takes
                earliest = max(now, self._last_used + 1.0 / self.rate)
                anchor = self._own_slot(earliest) if self.members > 1 else earliest
                self._regrid(members, 0, anchor)
            self.leading = True
            if self._target is not None:
                self._set_rate(self._target, now)
                self._target = None

    def follow(self, rate: float, anchor: float, members: int, index: int, known: float | None) -> None:
        """Another process leads: the key's `rate` and grid are its, this process takes
        place `index` in each round of `members` slots."""
        with self._lock:
            now = self._clock()
            if self.leading and self._last_used == float("-inf"):
                # a newcomer (nothing sent yet): the grid read was the leader's before it knew
                # of this process, and its slots are all taken; take none until the leader
                # publishes another (at its next sync), or for JOIN_HOLD at most
                self._joining = (rate, anchor)
                self._joining_until = now + JOIN_HOLD
            elif self._joining is not None and (
                (rate, anchor) != self._joining or now >= self._joining_until
            ):
                self._joining, self._joining_until = None, 0.0
                self.generation += 1  # waiters take slots on the grid that has room for them
                self._changed.notify_all()
            self.leading = False
            self.known = known
            rate = self._bounded(rate, members)
            if (rate, anchor, members, index) != (self.rate, self.anchor, self.members, self.index):
                self.rate = rate
                self._regrid(members, index, anchor)

    def used(self, slot: float) -> None:
        """A request was sent in `slot` (acquire says so itself; the simulation calls it)."""
        with self._lock:
            self._used(slot)

    def _used(self, slot: float) -> None:
        self._last_used = max(self._last_used, slot)

    def _regrid(self, members: int, index: int, anchor: float) -> None:
        # slots taken on the old grid are void (as after a 429): waiters take new ones, a
        # key's spacing at least after this process's last request
        if max(1, members) != self.members:
            self._others.clear()  # the others' total counts other runs now
            self._gridded_at, self._members_before = self._clock(), self.members
        self.members, self.index, self.anchor = max(1, members), index, anchor
        self._next_slot = max(self._clock(), self._last_used + 1.0 / self.rate)
        self.generation += 1
        self._changed.notify_all()

    def figures(self) -> tuple[float, float, float | None]:
        """(rate, anchor, known): what the leader publishes for the others."""
        with self._lock:
            return self.rate, self.anchor, self.known

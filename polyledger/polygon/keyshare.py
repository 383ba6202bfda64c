"""Processes sharing an API key share one rate, found by one of them.

Each process syncs about once a second with a board the processes share (the ledger's
`key_members` and `key_rates` tables: `LedgerBoard`; a dict in the simulation:
`MemoryBoard`): it says it is alive, and reads who else is.
The member that joined first leads: its limiter finds the key's rate alone, from the 429s
(`RateLimiter`), and publishes it with the grid its slots are on. The others follow: the
same rate and grid, each taking its own place in every round of slots. Their requests
reach the server evenly spaced, as one process's would, so the key is shared evenly and
a key of a few requests a minute (a server bucket of one request) is not refused for two
requests close together. When the leader measures the key's limit it is stored with when
and by whom; a process starting later with nobody alive on the key starts there, not at
`--rate`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from polyledger.polygon.ratelimit import RateLimiter

if TYPE_CHECKING:
    from polyledger.ledger import Ledger

SYNC_SECONDS = 1.0  # how often a process publishes and reads the board
ALIVE_SECONDS = 5.0  # a member not seen for this long has stopped (or died)
LEARNED_FOR_SECONDS = 86_400.0  # a key's limit learned longer ago is probed again (plans change)


def key_id(api_key: str, base_url: str) -> str:
    """Names the key on the board without holding it: a one-way digest of API and key."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\0{api_key}".encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Member:
    member: str
    joined: float
    rate: float  # the key's rate as its limiter has it
    anchor: float  # where its grid of slots starts
    throttled: int = 0  # 429s it has seen
    ok: int = 0  # requests of its accepted so far


class KeyBoard(Protocol):
    def publish(
        self, member: str, rate: float, anchor: float, learned: float | None, throttled: int = 0, ok: int = 0
    ) -> None:
        """This member's figures now; `learned`: the key's limit it has just measured."""

    def members(self) -> list[Member]:
        """The members alive on the key (seen within ALIVE_SECONDS), first joined first."""

    def learned(self) -> float | None:
        """The key's limit as last learned (within LEARNED_FOR_SECONDS), if ever."""

    def leave(self, member: str) -> None:
        """This member stopped."""


@dataclass
class MemoryBoard:
    """A board in memory, on a given clock: the simulation's, and tests'."""

    clock: Callable[[], float]
    rows: dict[str, Member] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    limit: tuple[float, float, str] | None = None  # (limit, when, by whom)

    def publish(
        self, member: str, rate: float, anchor: float, learned: float | None, throttled: int = 0, ok: int = 0
    ) -> None:
        now = self.clock()
        joined = self.rows[member].joined if member in self.rows else now
        self.rows[member] = Member(member, joined, rate, anchor, throttled, ok)
        self.seen[member] = now
        if learned is not None:
            self.limit = (learned, now, member)

    def members(self) -> list[Member]:
        now = self.clock()
        alive = [row for name, row in self.rows.items() if now - self.seen[name] <= ALIVE_SECONDS]
        return sorted(alive, key=lambda row: (row.joined, row.member))

    def learned(self) -> float | None:
        if self.limit is None or self.clock() - self.limit[1] > LEARNED_FOR_SECONDS:
            return None
        return self.limit[0]

    def leave(self, member: str) -> None:
        self.rows.pop(member, None)
        self.seen.pop(member, None)


def starting_rate(board: KeyBoard) -> float | None:
    """Where a newcomer starts: the key's limit as learned, if nobody alive is leading it
    (when someone is, the newcomer follows the leader's rate at its first sync)."""
    return board.learned()


class LedgerBoard:
    """The board in the ledger, for runs on one key (a run of several processes is several
    members). Runs on several hosts share it through PostgreSQL; their clocks must agree
    to well under a request's spacing (NTP does), as the grid's anchor is a wall-clock time.
    The limiter's clock is monotonic: anchors are converted at this boundary."""

    def __init__(
        self,
        ledger: Ledger,
        key: str,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.key = key
        self._wall = wall
        self._monotonic = monotonic

    def _offset(self) -> float:
        return self._wall() - self._monotonic()

    def publish(
        self, member: str, rate: float, anchor: float, learned: float | None, throttled: int = 0, ok: int = 0
    ) -> None:
        now = self._wall()
        self.ledger.publish_key_member(
            self.key,
            member,
            now=now,
            rate=rate,
            anchor=anchor + self._offset(),
            known=learned,
            throttled=throttled,
            ok=ok,
            learned=learned,
        )

    def members(self) -> list[Member]:
        offset = self._offset()
        rows = self.ledger.key_members(self.key, self._wall() - ALIVE_SECONDS)
        return [
            Member(m, joined, rate, anchor - offset, throttled, ok)
            for m, joined, rate, anchor, _, throttled, ok in rows
        ]

    def learned(self) -> float | None:
        return self.ledger.learned_key_rate(self.key, self._wall() - LEARNED_FOR_SECONDS)

    def leave(self, member: str) -> None:
        self.ledger.leave_key(member, self._wall() - 10 * ALIVE_SECONDS)


class KeyShare:
    """One process's side of the board: `sync()` at start and about every SYNC_SECONDS."""

    def __init__(self, board: KeyBoard, member: str, limiter: RateLimiter) -> None:
        self.board = board
        self.member = member
        self.limiter = limiter
        self._others_throttled: dict[str, int] = {}

    def sync(self) -> None:
        rate, anchor, known = self.limiter.figures()
        # only the leader's measurement is the key's (a follower's `known` is the leader's)
        learned = known if self.limiter.leading else None
        self.board.publish(self.member, rate, anchor, learned, self.limiter.throttled, self.limiter.succeeded)
        members = self.board.members()
        # what the key accepted for the others: the leader's measure of the key counts it
        self.limiter.note_others(sum(m.ok for m in members if m.member != self.member))
        refused_elsewhere = False
        for m in members:
            if m.member != self.member:
                # a 429 at a rate above the leader's now (the follower had not yet taken the
                # leader's last cut) says nothing the leader did not act on
                refused = m.throttled > self._others_throttled.get(m.member, m.throttled)
                refused_elsewhere |= refused and m.rate <= rate * (1.0 + 1e-9)
                self._others_throttled[m.member] = m.throttled
        names = [m.member for m in members]
        if not names or names[0] == self.member:
            self.limiter.lead(max(1, len(names)))
            if refused_elsewhere:
                self.limiter.throttled_elsewhere()
            # the grid may have moved: publish where it is now
            rate, anchor, known = self.limiter.figures()
            self.board.publish(
                self.member, rate, anchor, known, self.limiter.throttled, self.limiter.succeeded
            )
        else:
            leader = members[0]
            self.limiter.follow(
                leader.rate, leader.anchor, len(names), names.index(self.member), self.board.learned()
            )

    def leave(self) -> None:
        self.board.leave(self.member)

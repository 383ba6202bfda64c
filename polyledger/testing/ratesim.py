"""Several hosts sharing one API key, simulated on a virtual clock.

Each host runs the real `RateLimiter` with a number of worker threads; the server is a
token bucket like the stand-in's (burst = one second of the limit, 429 with Retry-After).
Time is virtual, so the simulation is exact and instant: tests prove the hosts converge
on the key's limit without depending on how busy the machine running them is.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from polyledger.polygon.client import RetryPolicy
from polyledger.polygon.keyshare import SYNC_SECONDS, KeyShare, MemoryBoard, starting_rate
from polyledger.polygon.ratelimit import RateLimiter


@dataclass
class SimulatedKey:
    """What the server saw: answers per host and per whole second of virtual time."""

    ok: list[int]
    throttled: list[int]
    ok_by_second: dict[int, int] = field(default_factory=dict)
    throttled_by_second: dict[int, int] = field(default_factory=dict)
    final_rates: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    def ok_rate(self, start: float, end: float) -> float:
        """Accepted requests per second over [start, end) of virtual time."""
        seconds = range(int(start), int(end))
        return sum(self.ok_by_second.get(s, 0) for s in seconds) / max(1, len(seconds))

    def throttled_share(self, start: float = 0.0, end: float = float("inf")) -> float:
        ok = sum(n for s, n in self.ok_by_second.items() if start <= s < end)
        refused = sum(n for s, n in self.throttled_by_second.items() if start <= s < end)
        return refused / max(1, ok + refused)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate_shared_key(
    *,
    limit: float,
    hosts: int,
    start_rate: float,
    seconds: float,
    workers: int = 4,
    latency: float = 0.02,
    retry_after: float | None = 1.0,
    retry_after_every: int = 1,
    server_burst: float | None = None,
    host_start_gap: float = 0.0,
    work_per_host: int | None = None,
    burst: float | None = None,
    board: MemoryBoard | None | bool = True,
    learned: float | None = None,
    seed: int = 0,
) -> SimulatedKey:
    """Run `hosts` limiters, each with `--rate` `start_rate`, against one key allowing `limit`/s.

    Every worker loops: wait for its limiter's slot, send (arrives after `latency`), get the
    answer after another `latency`, report it to its limiter. Host i starts at i * host_start_gap.
    With `work_per_host`, a host stops once that many of its requests were accepted (its
    finishing time is in `finished_at`, and it leaves the board): a host starved of its share
    finishes late.
    The server is a token bucket holding `server_burst` requests (default: a second of the
    limit, at least one, as the stand-in's); it sends `Retry-After: retry_after` on every
    `retry_after_every`-th 429 (None: never).
    As in a run: the limiter's burst is min(workers, 4) unless given, and a refused request
    is sent again after the client's retry delay (Retry-After, or jittered exponential
    backoff; jitter from `seed`). With `board` (True: a new one; or one given, holding what
    earlier processes learned; False: none), the hosts share what they learn about the key
    as processes on one ledger do, syncing every SYNC_SECONDS.
    """
    clock = _Clock()
    burst = min(workers, 4) if burst is None else burst
    shared = MemoryBoard(clock) if board is True else (board or None)
    if shared is not None and learned is not None:  # an earlier run on the ledger measured the key
        shared.limit = (learned, 0.0, "earlier")
    limiters: list[RateLimiter] = []
    shares: list[KeyShare | None] = []
    policy, jitter = RetryPolicy(), random.Random(seed)
    result = SimulatedKey(ok=[0] * hosts, throttled=[0] * hosts, finished_at=[seconds] * hosts)
    sent = [0] * hosts  # requests accepted or in flight, per host
    server_burst = max(1.0, limit) if server_burst is None else server_burst
    tokens, refilled, refusals = server_burst, 0.0, 0
    # events: (time, sequence, kind, host, accepted, retries so far, limiter generation);
    # kinds "start" (a host starts), "sync" (it syncs with the board), "ready" (a worker asks
    # its limiter for a slot), "slot" (its slot is due), "arrive" (at the server), "answer"
    # (back at the worker)
    events: list[tuple[float, int, str, int, bool, int, float | None]] = []
    sequence = 0

    def push(
        at: float,
        kind: str,
        host: int,
        accepted: bool = False,
        retry: int = 0,
        generation: int = 0,
        pause: float | None = None,
    ) -> int:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (at, sequence, kind, host, accepted, retry, generation, pause))
        return sequence

    # slots taken and not yet due, per host (sequence -> retries): when a limiter voids them
    # (a 429, a new grid), its waiters take new ones at once, as acquire() wakes them
    waiting: list[dict[int, int]] = [{} for _ in range(hosts)]
    void: set[int] = set()

    def take_slot(at: float, host: int, retry: int) -> None:
        limiter = limiters[host]
        seq = push(at + limiter.reserve(), "slot", host, retry=retry, generation=limiter.generation)
        waiting[host][seq] = retry

    def retake_if_voided(at: float, host: int, before: int) -> None:
        if limiters[host].generation == before:
            return
        voided, waiting[host] = waiting[host], {}
        void.update(voided)
        for retry in voided.values():
            take_slot(at, host, retry)

    for host in range(hosts):
        push(host * host_start_gap, "start", host)
    while events:
        at, seq, kind, host, accepted, retry, generation, pause = heapq.heappop(events)
        if at >= seconds:
            break
        if seq in void:
            void.discard(seq)
            continue
        clock.now = at
        before = limiters[host].generation if host < len(limiters) else 0
        if kind == "start":  # as a run: its limiter starts at its share when the board knows it
            member = f"host-{host}"
            alone = shared is None or not shared.members()
            start = starting_rate(shared) if shared is not None and alone else None
            limiters.append(RateLimiter(start_rate, burst=burst, start=start, clock=clock))
            shares.append(KeyShare(shared, member, limiters[host]) if shared is not None else None)
            if shares[host] is not None:
                shares[host].sync()  # type: ignore[union-attr]
                push(at + SYNC_SECONDS, "sync", host)
            for _ in range(workers):
                push(at, "ready", host)
            continue
        limiter = limiters[host]
        if kind == "sync":
            share = shares[host]
            assert share is not None
            if result.finished_at[host] < at:
                share.leave()
            else:
                share.sync()
                retake_if_voided(at, host, before)
                push(at + SYNC_SECONDS, "sync", host)
        elif kind == "ready":
            if work_per_host is not None and sent[host] >= work_per_host and not retry:
                continue  # this host's work is all accepted or in flight: the worker stops
            if not retry:
                sent[host] += 1
            take_slot(at, host, retry)
        elif kind == "slot":  # due, and not voided since it was taken: sent
            waiting[host].pop(seq, None)
            limiter.used(at)
            push(at + latency, "arrive", host, retry=retry)
        elif kind == "arrive":  # the server's token bucket decides, in arrival order
            tokens = min(server_burst, tokens + (at - refilled) * limit)
            refilled = at
            accepted = tokens >= 1.0
            tokens -= 1.0 if accepted else 0.0
            by_second = result.ok_by_second if accepted else result.throttled_by_second
            by_second[int(at)] = by_second.get(int(at), 0) + 1
            if not accepted:
                refusals += 1
                sends = retry_after is not None and refusals % retry_after_every == 0
                pause = retry_after if sends else None
            push(at + latency, "answer", host, accepted, retry, pause=pause)
        elif accepted:
            result.ok[host] += 1
            limiter.on_success()
            retake_if_voided(at, host, before)
            if result.ok[host] == work_per_host:
                result.finished_at[host] = at
            push(at, "ready", host)
        else:  # refused: the client waits as RetryPolicy.delay says, then sends it again
            result.throttled[host] += 1
            limiter.on_throttled(pause)
            retake_if_voided(at, host, before)
            push(at + policy.delay(retry, pause, rng=jitter), "ready", host, retry=retry + 1)
    result.final_rates = [limiter.rate for limiter in limiters]
    return result


TABLE_LIMITS = (5 / 60, 1.0, 5.0, 10.0, 20.0, 100.0)  # keys of the promised table, requests/s


def simulate_table_key(
    limit: float, hosts: int, learned: float | None, host_start_gap: float = 0.0
) -> tuple[SimulatedKey, float]:
    """One row of the promised table (`bench/ratelimit.py --simulate` prints it,
    `tests/test_ratelimit.py` holds it): --rate 100, 8 workers, over max(60 s, 300
    requests' time); the issue's server at 10/s (a bucket of 5, Retry-After on every
    second 429), a bucket of a second's worth and Retry-After: 1 otherwise. The key and
    how many seconds it ran."""
    seconds = max(60.0, 300 / limit)
    issue = limit == 10.0
    key = simulate_shared_key(
        limit=limit,
        hosts=hosts,
        start_rate=100.0,
        seconds=seconds,
        workers=8,
        retry_after=1.0,
        retry_after_every=2 if issue else 1,
        server_burst=5 if issue else None,
        learned=learned,
        host_start_gap=host_start_gap,
    )
    return key, seconds

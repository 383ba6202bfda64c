"""A run: worker threads claim units from the ledger until none is left.

No shards and no per-worker quotas: every worker takes the next pending unit. Units held
by another live process are waited for; units whose lease expired (their process died)
are taken back. A fatal error (bad key, unwritable disk) stops everyone at once and
every unit in flight goes back to pending.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from polyledger.errors import FatalRunError
from polyledger.ledger import Ledger, new_owner_id
from polyledger.polygon.client import PolygonClient, RetryPolicy
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.storage import BarStore
from polyledger.worker import UnitOutcome, process_unit

log = logging.getLogger("polyledger.run")

DEFAULT_WORKERS = 8
DEFAULT_RATE = 25.0  # requests/second; paid plans are asked to stay under 100
DEFAULT_LEASE_SECONDS = 60.0


@dataclass
class RunOptions:
    workers: int = DEFAULT_WORKERS
    rate: float = DEFAULT_RATE
    adjusted: bool = True
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    datasets: tuple[str, ...] | None = None
    max_units: int | None = None  # stop claiming after this many units (sampling, tests)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (10.0, 60.0)


@dataclass
class RunStats:
    """Live counters of a run, shared by the workers and the progress display."""

    total_units: int = 0
    started: float = field(default_factory=time.monotonic)
    outcomes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    bars: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: UnitOutcome) -> None:
        with self._lock:
            self.outcomes[outcome.state] += 1
            self.bars += outcome.bars
            self.requests += outcome.requests
            if outcome.error_class:
                self.errors[outcome.error_class] += 1

    @property
    def settled(self) -> int:
        return sum(self.outcomes[s] for s in ("done", "empty_confirmed", "failed"))


@dataclass
class RunReport:
    run_id: str
    outcome: str  # finished | stopped | interrupted
    stats: RunStats
    message: str = ""
    requests_sent: int = 0
    throttled: int = 0
    request_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "finished" and not self.stats.outcomes["failed"]


class Run:
    """One `polyledger run`. Build it, then call `execute()` (blocking)."""

    def __init__(
        self,
        ledger: Ledger,
        store: BarStore,
        *,
        api_key: str,
        base_url: str,
        options: RunOptions | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.options = options or RunOptions()
        self.run_id = uuid.uuid4().hex[:12]
        self.owner = new_owner_id()
        self.stop = threading.Event()
        self.stats = RunStats()
        self.limiter = RateLimiter(self.options.rate, burst=min(self.options.workers, 4))
        self.client = PolygonClient(
            api_key,
            base_url=base_url,
            limiter=self.limiter,
            retry=self.options.retry,
            timeout=self.options.timeout,
            stop=self.stop,
        )
        self._fatal: FatalRunError | None = None
        self._claimed = 0
        self._claim_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------

    def execute(self, on_tick=None, tick_seconds: float = 0.5) -> RunReport:  # type: ignore[no-untyped-def]
        """Run until no unit is left, a fatal error, or `request_stop()`.
        `on_tick(stats)` is called from this thread while workers run."""
        opts = self.options
        self.ledger.reclaim_expired()
        pending, others = self.ledger.open_work(self.owner, opts.datasets)
        # nobody else is writing: every temporary is a crash leftover
        self.store.clean_temporaries(older_than=0 if others == 0 else 3600)
        self.stats.total_units = self._units_in_scope()
        self.ledger.start_run(
            self.run_id,
            workers=opts.workers,
            rate=opts.rate,
            adjusted=opts.adjusted,
            base_url=self.client.base_url,
        )
        threads = [
            threading.Thread(target=self._worker, name=f"polyledger-worker-{i}", daemon=True)
            for i in range(opts.workers)
        ]
        for thread in threads:
            thread.start()
        outcome = "finished"
        try:
            last_beat = time.monotonic()
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(timeout=tick_seconds / len(threads))
                if on_tick:
                    on_tick(self.stats)
                if time.monotonic() - last_beat > opts.lease_seconds / 4:
                    self.ledger.heartbeat(self.owner, opts.lease_seconds)
                    last_beat = time.monotonic()
        except KeyboardInterrupt:
            outcome = "interrupted"
            self.request_stop()
            for thread in threads:
                thread.join()
        if self._fatal is not None:
            outcome = "stopped"
        elif self.stop.is_set() and outcome == "finished":
            outcome = "interrupted"
        self.client.close()
        _, others = self.ledger.open_work(self.owner, opts.datasets)
        if others == 0:
            self.store.clean_temporaries()
        self.ledger.end_run(self.run_id, outcome, self.stats.settled, self.client.requests_sent)
        if on_tick:
            on_tick(self.stats)
        return RunReport(
            run_id=self.run_id,
            outcome=outcome,
            stats=self.stats,
            message=str(self._fatal) if self._fatal else "",
            requests_sent=self.client.requests_sent,
            throttled=self.limiter.throttled,
            request_errors=dict(self.client.errors_by_class),
        )

    def request_stop(self) -> None:
        """Stop claiming; units in flight go back to pending at their next request."""
        self.stop.set()

    def _units_in_scope(self) -> int:
        counts = self.ledger.counts()
        datasets = self.options.datasets or tuple(counts)
        pending = sum(counts.get(d, {}).get("pending", 0) for d in datasets)
        running = sum(counts.get(d, {}).get("running", 0) for d in datasets)
        total = pending + running
        return min(total, self.options.max_units) if self.options.max_units else total

    # --- workers -----------------------------------------------------------------

    def _take(self) -> bool:
        """Count one claim against --max-units; False when the budget is spent."""
        with self._claim_lock:
            if self.options.max_units is not None and self._claimed >= self.options.max_units:
                return False
            self._claimed += 1
            return True

    def _worker(self) -> None:
        opts = self.options
        while not self.stop.is_set():
            if not self._take():
                return
            units = self.ledger.claim(self.owner, opts.lease_seconds, 1, opts.datasets)
            if not units:
                with self._claim_lock:
                    self._claimed -= 1
                if not self._wait_for_others():
                    return
                continue
            unit = units[0]
            try:
                outcome = process_unit(
                    unit,
                    client=self.client,
                    ledger=self.ledger,
                    store=self.store,
                    adjusted=opts.adjusted,
                    run_id=self.run_id,
                )
            except FatalRunError as exc:
                if self._fatal is None:
                    self._fatal = exc
                self.stop.set()
                return
            self.stats.add(outcome)

    def _wait_for_others(self) -> bool:
        """No pending unit: if other live processes hold units, wait for them to finish or
        for their leases to expire. False when there is nothing left to do."""
        while not self.stop.is_set():
            self.ledger.reclaim_expired()
            pending, others = self.ledger.open_work(self.owner, self.options.datasets)
            if pending:
                return True
            if not others:
                return False
            self.stop.wait(min(2.0, self.options.lease_seconds / 4))
        return False

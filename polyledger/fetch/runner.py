"""A run: worker threads claim units from the ledger until none is left.

No shards and no per-worker quotas: every worker takes the next pending unit. Units held
by another live process are waited for; units whose lease expired (their process died)
are taken back. A fatal error (bad key, unwritable disk, an API that stays down) stops
everyone at once and every unit in flight goes back to pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polyledger import datasets
from polyledger.defaults import (
    DEFAULT_GIVE_UP_AFTER,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WORKERS,
)
from polyledger.errors import FatalRunError, InputError, LedgerError, one_line
from polyledger.fetch.heap import return_freed_memory
from polyledger.fetch.silence import SilenceWatch
from polyledger.fetch.units import UnitJob, UnitOutcome, process_units
from polyledger.ledger import SETTLED, Ledger, UnitState, new_owner_id, queries
from polyledger.polygon.breaker import CircuitBreaker
from polyledger.polygon.client import PolygonClient, RetryPolicy
from polyledger.polygon.keyshare import SYNC_SECONDS, KeyShare, LedgerBoard, key_id
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.secrets import redact
from polyledger.storage import BarStore, unit_relative_path
from polyledger.storage.home import hold_home

log = logging.getLogger("polyledger.run")

SETTLED_OUTCOMES = (UnitState.DONE, UnitState.EMPTY_CONFIRMED, UnitState.FAILED)


class SystematicFailure(FatalRunError):
    """Most units fail the same internal way: a bug, not bad luck. Stop and say so."""

    error_class = "systematic"


@dataclass
class RunOptions:
    workers: int = DEFAULT_WORKERS
    rate: float = DEFAULT_RATE
    adjusted: bool = True
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    datasets: tuple[str, ...] | None = None
    max_units: int | None = None  # stop claiming after this many units (sampling, tests)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    give_up_after: float = DEFAULT_GIVE_UP_AFTER
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (10.0, DEFAULT_READ_TIMEOUT)
    flatfiles: Any = None  # a `flatfiles.source.FlatFilesConfig`: read units from flat files
    # only units whose period starts in it (the flat route's stages, a year at a time)
    window: tuple[dt.date, dt.date] | None = None

    def __post_init__(self) -> None:
        if self.flatfiles is None and self.datasets is None:
            # a run of the API (`run`, `sync`, a notebook's) never claims the flat-file route's
            # day units, whenever they were planned: claimed, they would fail (nothing of the
            # API serves them) and fail the months built from them
            day_files = datasets.FLAT_FILE_DATASETS
            self.datasets = tuple(name for name in datasets.names() if name not in day_files)


def _states_in_scope(ledger: Ledger, options: RunOptions) -> Counter:
    """Units per state of the datasets (and window) a run's options take in."""
    counts = ledger.counts(options.window)
    found: Counter = Counter()
    for dataset in options.datasets or tuple(counts):
        found.update(counts.get(dataset, {}))
    return found


def unsettled_in_scope(ledger: Ledger, options: RunOptions) -> dict[str, int]:
    """{state: units} of a run's scope not done or empty (what it leaves behind)."""
    return {state: n for state, n in _states_in_scope(ledger, options).items() if state not in SETTLED and n}


def units_to_do(ledger: Ledger, options: RunOptions) -> int:
    """Pending and running units of a run's scope, within its --max-units."""
    found = _states_in_scope(ledger, options)
    total = found[UnitState.PENDING] + found[UnitState.RUNNING]
    return min(total, options.max_units) if options.max_units else total


@dataclass
class RunStats:
    """Live counters of a run, shared by the workers and the progress display."""

    total_units: int = 0
    started: float = field(default_factory=time.monotonic)
    outcomes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    bars: int = 0
    requests: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=20))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: UnitOutcome) -> None:
        with self._lock:
            self.outcomes[outcome.state] += 1
            self.bars += outcome.bars
            self.requests += outcome.requests
            if outcome.state == UnitState.FAILED and outcome.error_class:
                self.errors[outcome.error_class] += 1
            if outcome.state in SETTLED_OUTCOMES:
                self.recent.append(outcome.error_class or "")

    @property
    def settled(self) -> int:
        return sum(self.outcomes[s] for s in SETTLED_OUTCOMES)

    def recount(self, in_scope: Callable[[], int], budget: int | None) -> None:
        """Units planned or queued again during the run (another terminal, a sync): once as
        many settled as were counted at the start, the total is what settled plus what
        `in_scope()` (pending and running) says, so progress never reads 6/5. A --max-units
        `budget` is the total already."""
        if not budget and self.settled >= self.total_units:
            self.total_units = max(self.total_units, self.settled + in_scope())

    def systematic_internal_error(self) -> str | None:
        """The error class of ours behind most recent outcomes, if there is one: a bug in
        polyledger (`internal:*`), or requests the API cannot parse (`bad_request`, a 400 on
        every unit is our request's fault, not the data's)."""
        with self._lock:
            internal = Counter(c for c in self.recent if c.startswith("internal:") or c == "bad_request")
            if len(self.recent) >= 10 and internal:
                name, count = internal.most_common(1)[0]
                if count >= 0.8 * len(self.recent):
                    return name
        return None


@dataclass
class RunReport:
    run_id: str
    outcome: str  # finished | stopped | interrupted
    stats: RunStats
    message: str = ""
    requests_sent: int = 0
    throttled: int = 0
    request_errors: dict[str, int] = field(default_factory=dict)
    unsettled: dict[str, int] = field(default_factory=dict)  # units in scope not done/empty at the end

    @property
    def ok(self) -> bool:
        """The run finished and every unit in its scope is settled (earlier failures count)."""
        return self.outcome == "finished" and not self.unsettled


def check_data_folder(ledger: Ledger, store: BarStore, options: RunOptions) -> None:
    """One ledger, one data folder, one choice: adjusted and raw bars never end up side by
    side, and no ledger's run writes into another's folder (its month files would be
    replaced) nor spreads its own files over two folders (the ledger records the folder
    its first run marked: `storage/home.py`). The choice is decided by the first run that
    may fetch bars (not by one fetching only splits or details); both are recorded in the
    data folder's marker (`polyledger-data.json`). Checked before any request (by `Run`,
    and by `polyledger run` before it remembers its options)."""
    adjustable = [name for name in datasets.names() if datasets.get(name).adjustable]
    bar_datasets = [name for name in (options.datasets or adjustable) if name in adjustable]
    deciding = bool(bar_datasets) and queries.has_units(ledger, bar_datasets)
    wanted = "true" if options.adjusted else "false"
    have, want = ("adjusted", "unadjusted") if wanted == "false" else ("unadjusted", "adjusted")
    refusal = f"this ledger holds {have} bars; use a separate ledger and data folder for {want} bars"
    # all checked before anything is recorded: a refused run changes nothing
    if deciding and ledger.setting("adjusted") not in (None, wanted):
        raise InputError(refusal)
    hold_home(ledger, store, adjusted=options.adjusted if deciding else None)
    if deciding and ledger.claim_setting("adjusted", wanted) != wanted:  # another run, just now
        raise InputError(refusal)


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
        run_id: str | None = None,  # a process of a multi-process run is named by its parent
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.options = options or RunOptions()
        self.run_id = run_id or uuid.uuid4().hex[:12]
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
            breaker=CircuitBreaker(give_up_after=self.options.give_up_after),
        )
        self.job = UnitJob(
            client=self.client,
            ledger=ledger,
            store=store,
            adjusted=self.options.adjusted,
            run_id=self.run_id,
            max_attempts=self.options.max_attempts,
            flatfiles=_flat_job(self.options.flatfiles),
            stop=self.stop,
            count=self.stats.add,
        )
        self.watch = SilenceWatch(self.options.lease_seconds)  # other runs that stopped beating
        # the runs on this key share its rate, and what they learned of its limit
        self.board = LedgerBoard(ledger, key_id(api_key, self.client.base_url))
        self.keyshare = KeyShare(self.board, self.run_id, self.limiter)
        self._fatal: BaseException | None = None
        self._claimed = 0
        self._claim_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------

    def execute(self, on_tick=None, tick_seconds: float = 0.5) -> RunReport:  # type: ignore[no-untyped-def]
        """Run until no unit is left, a fatal error, or `request_stop()`.
        `on_tick(stats)` is called from this thread while workers run. A KeyboardInterrupt
        stops gracefully; a second one while stopping propagates at once (still safe:
        files are atomic and leases expire)."""
        opts = self.options
        heap = return_freed_memory()  # page buffers reused, memory bounded: see fetch/heap.py
        log.debug("run heap: %s", heap or "as the C library has it")
        check_data_folder(self.ledger, self.store, self.options)
        self._reclaim_expired()
        self.stats.total_units = self._units_in_scope()
        self.ledger.start_run(
            self.run_id,
            workers=opts.workers,
            rate=opts.rate,
            adjusted=opts.adjusted,
            base_url=self.client.base_url,
            owner=self.owner,
        )
        threads = [
            threading.Thread(target=self._work_loop, name=f"polyledger-worker-{i}", daemon=True)
            for i in range(opts.workers)
        ]
        self._join_key()
        beating = threading.Event()
        heart = threading.Thread(
            target=self._heartbeat, args=(beating,), name="polyledger-heartbeat", daemon=True
        )
        heart.start()
        sharing = threading.Thread(
            target=self._share_key, args=(beating,), name="polyledger-keyshare", daemon=True
        )
        sharing.start()
        for thread in threads:
            thread.start()
        outcome = "finished"
        try:
            self._supervise(threads, on_tick, tick_seconds)
        except KeyboardInterrupt:
            outcome = "interrupted"
            self.request_stop()
            for thread in threads:
                thread.join()
        finally:
            beating.set()
            # a beat in flight finishes before the caller may close the ledger (bounded: a
            # beat waiting on an unreachable server must not hold the exit)
            heart.join(timeout=5)
            sharing.join(timeout=5)
            self._leave_key()
        if self._fatal is not None:
            outcome = "stopped"
        elif self.stop.is_set():
            outcome = "interrupted"
        self.client.close()
        self.ledger.end_run(self.run_id, outcome, self.stats.settled, self.client.requests_sent)
        log.info(
            "run ended: run_id=%s outcome=%s units_settled=%d failed=%d requests=%d http_429=%d%s",
            self.run_id,
            outcome,
            self.stats.settled,
            self.stats.outcomes[UnitState.FAILED],
            self.client.requests_sent,
            self.limiter.throttled,
            f" reason={one_line(self._fatal)}" if self._fatal else "",
        )
        if on_tick:
            on_tick(self.stats)
        return RunReport(
            run_id=self.run_id,
            outcome=outcome,
            stats=self.stats,
            message=redact(str(self._fatal)) if self._fatal else "",
            requests_sent=self.client.requests_sent,
            throttled=self.limiter.throttled,
            request_errors=dict(self.client.errors_by_class),
            unsettled=self._unsettled(),
        )

    def _heartbeat(self, finished: threading.Event) -> None:
        """Say this run is alive every beat and renew its leases every quarter lease, on its
        own thread, so a slow console, a busy main thread or a slow request never lets them
        lapse; then look at the other runs (`fetch/silence.py`). A locked ledger only delays
        a beat."""
        lease = self.options.lease_seconds
        renew_every = max(1, int(lease / 4 // self.watch.beat))  # beats between lease renewals
        beats = 0
        while not finished.wait(self.watch.beat):
            try:
                beats += 1
                if beats % renew_every == 0:
                    self.ledger.heartbeat(self.owner, lease)
                self.ledger.run_alive(self.run_id, self.stats.settled, self.client.requests_sent)
                self.watch.observe(self.ledger.clock(), self.ledger.runs_last_seen(self.owner))
            except Exception:  # noqa: BLE001 - try again at the next beat; leases have slack
                log.warning("could not renew leases (ledger busy); trying again")

    def _join_key(self) -> None:
        """Start at the key's limit as an earlier run learned it, when no run is on the key
        now (one that is sets the rate at the first sync), and join the key's board."""
        try:
            if not self.board.members():
                learned = self.board.learned()
                if learned is not None:
                    self.limiter.adopt(learned)
                    log.info("key's rate limit as learned earlier: %.3g requests/s", learned)
            self.keyshare.sync()
        except Exception:  # noqa: BLE001 - the board is an optimisation: alone, the limiter finds the rate
            log.warning("could not read the key's rate from the ledger; finding it from the answers")

    def _share_key(self, finished: threading.Event) -> None:
        """Sync with the other runs on the key about every second (`polygon/keyshare.py`)."""
        while not finished.wait(SYNC_SECONDS):
            try:
                self.keyshare.sync()
            except Exception:  # noqa: BLE001 - next second; meanwhile the grid stays as it was
                log.debug("key board not reachable; trying again")

    def _leave_key(self) -> None:
        try:
            self.keyshare.leave()
        except Exception:  # noqa: BLE001 - a row left behind goes stale in seconds
            log.debug("could not leave the key board")

    def _supervise(self, threads: list[threading.Thread], on_tick, tick_seconds: float) -> None:  # type: ignore[no-untyped-def]
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=tick_seconds / len(threads))
            self.stats.recount(self._units_in_scope, self.options.max_units)
            if on_tick:
                on_tick(self.stats)
            systematic = self.stats.systematic_internal_error()
            if systematic and self._fatal is None:
                self._fail_run(
                    SystematicFailure(
                        f"most recent units failed with {systematic}: this is a bug in polyledger, "
                        "not in the data; stopping (see `polyledger audit` for examples)"
                    )
                )

    def request_stop(self) -> None:
        """Stop claiming; units in flight finish or go back to pending at their next request."""
        self.stop.set()

    def _fail_run(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self.stop.set()

    def _unsettled(self) -> dict[str, int]:
        return unsettled_in_scope(self.ledger, self.options)

    def _units_in_scope(self) -> int:
        return units_to_do(self.ledger, self.options)

    # --- workers -----------------------------------------------------------------

    def _take(self, wanted: int) -> int:
        """Reserve up to `wanted` units of the --max-units budget; returns how many."""
        with self._claim_lock:
            if self.options.max_units is None:
                granted = wanted
            else:
                granted = max(0, min(wanted, self.options.max_units - self._claimed))
            self._claimed += granted
            return granted

    def _give_back(self, count: int) -> None:
        with self._claim_lock:
            self._claimed -= count

    def _work_loop(self) -> None:
        try:
            self._work()
        except FatalRunError as exc:
            self._fail_run(exc)
        except KeyboardInterrupt:  # libraries may raise it on any thread: treat as a stop request
            self.request_stop()
        except Exception as exc:  # the ledger itself failed (disk, locks): nothing is safe to do
            log.exception("worker stopped")
            self._fail_run(LedgerError(f"the ledger could not be updated: {type(exc).__name__}: {exc}"))

    def _work(self) -> None:
        opts = self.options
        while not self.stop.is_set():
            if not self._take(1):
                return
            units = self.ledger.claim(self.owner, opts.lease_seconds, 1, opts.datasets, opts.window)
            if not units:
                self._give_back(1)
                if not self._wait_for_others():
                    return
                continue
            group = units + self._extend(units[0])
            if self.stop.is_set():
                # claimed as the run stopped (a fatal error gives its units back after the
                # stop): back untouched, neither asked nor counted, nor logged a second time
                for unit in group:
                    self.ledger.release(unit, undo_attempt=True)
                return
            for outcome in process_units(group, self.job):  # each unit logged where it settled
                self.stats.add(outcome)

    def _extend(self, head) -> list:  # type: ignore[no-untyped-def]
        """Claim the pending units that directly follow `head`, up to the group size (how
        many consecutive units one request may cover: the dataset's spec says)."""
        flat = self.options.flatfiles
        if flat is not None and datasets.get(head.dataset).grain != "date":
            # flat files: the same period's units of the following tickers, built in one pass
            extra = self._take(flat.batch - 1)
            claim = self.ledger.claim_same_period
        else:
            extra = self._take(datasets.get(head.dataset).group_size - 1)
            claim = self.ledger.claim_following
        if not extra:
            return []
        following = claim(self.owner, self.options.lease_seconds, head, extra)
        self._give_back(extra - len(following))
        return following

    def _reclaim_expired(self) -> None:
        """Units of dead workers back to pending, their half-written temporaries removed
        first. Only those units' folders are looked at (never a walk of the whole data
        folder): a worker's own failed writes remove their temporaries, so only a killed
        process leaves any, and its units are exactly the ones whose leases expire. Its
        temporaries are at least 3/4 of a lease old by then (leases are renewed every
        quarter lease), so younger ones, of a live writer, are left alone.

        Then the units of runs this one saw stop beating for a whole window (killed, cut off):
        their temporaries are at least the window less a beat old."""

        take_back_expired(self.ledger, self.store, self.options.lease_seconds)
        silent = self.watch.silent(self.ledger.clock())
        if silent and self.watch.window is not None:
            clean = temporaries_cleaner(self.store, self.watch.window / 2)
            taken = self.ledger.reclaim_silent(silent, before_commit=clean)
            if taken:
                log.info("took back %d units of a run that stopped sending heartbeats", len(taken))

    def _wait_for_others(self) -> bool:
        """No pending unit: if other live processes hold units, wait for them to finish or
        for their leases to expire. False when there is nothing left to do."""
        while not self.stop.is_set():
            self._reclaim_expired()
            pending, others = self.ledger.open_work(self.owner, self.options.datasets, self.options.window)
            if pending:
                return True
            if not others:
                return False
            self.stop.wait(min(2.0, self.options.lease_seconds / 4))
        return False


def temporaries_cleaner(
    store: BarStore, older_than: float
) -> Callable[[list[tuple[str, str, dt.date]]], None]:
    """What removes, beside units taken back, the temporaries older than `older_than` seconds."""

    def clean(units: list[tuple[str, str, dt.date]]) -> None:
        store.clean_temporaries([unit_relative_path(*unit) for unit in units], older_than=older_than)

    return clean


def take_back_expired(
    ledger: Ledger, store: BarStore, lease_seconds: float
) -> list[tuple[str, str, dt.date]]:
    """Units whose lease ran out (their worker died) back to pending, the temporaries a
    dead writer left beside them removed first (those older than half a lease: see
    `Run._reclaim_expired`). Returns them as (dataset, ticker, period_start)."""
    return ledger.reclaim_expired(before_commit=temporaries_cleaner(store, lease_seconds / 2))


def _flat_job(config: Any) -> Any:
    """The workers' shared flat-file reader, when the run reads flat files."""
    if config is None:
        return None
    from polyledger.flatfiles.job import FlatJob

    return FlatJob(config)

"""One group of units, start to finish: fetch every page of their range once, split the
bars by unit, write each unit's file, settle each unit.

A group is consecutive months (or years) of one ticker that a single request range can
serve: the ledger's bookkeeping grain is the unit, not the request. A dataset whose spec
fetches unit by unit (`fetch_unit`: reference data, grouped daily bars) is a group of one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import polars as pl

from polyledger import datasets
from polyledger.bars import UnitBars, bars_outside, split_by_unit
from polyledger.errors import (
    FatalRunError,
    FetchError,
    InputError,
    LeaseLost,
    PermanentError,
    ProtocolError,
    TransientError,
)
from polyledger.fetch.entitled import EntitledFrom
from polyledger.ledger import AttemptRecord, ClaimedUnit, FetchedUnit, Ledger, StoredFile
from polyledger.listings import Listing, Unattributed, outside_every_listing
from polyledger.periods import et_date_of_ms, et_midnight_ms
from polyledger.polygon import cores
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchCost, iter_pages
from polyledger.secrets import redact
from polyledger.storage import BarStore, EncodedUnit
from polyledger.trading_days import trading_days

log = logging.getLogger("polyledger.worker")  # the name run logs have always shown
# bars, not reference data: a day of them is whole only once the day has ended (a
# ticker's details as of today are what they are today)
BAR_DATASETS = frozenset(datasets.names(bars=True))


@dataclass(frozen=True)
class UnitOutcome:
    state: str  # done | empty_confirmed | failed | requeued | released | lost
    bars: int = 0
    requests: int = 0
    error_class: str | None = None


def _uncounted(outcome: UnitOutcome) -> None:
    """No run to count for (a unit test calling process_units)."""


@dataclass(frozen=True)
class UnitJob:
    """What every unit of a run shares."""

    client: PolygonClient
    ledger: Ledger
    store: BarStore
    adjusted: bool
    run_id: str | None = None
    max_attempts: int = 3
    flatfiles: Any = None  # a `flatfiles.job.FlatJob`: units read from flat files instead
    entitled: EntitledFrom = field(default_factory=EntitledFrom)  # the plan's history, as seen
    # the run's stop, set by a fatal error before its units go back: no other worker of the
    # run claims them again
    stop: threading.Event = field(default_factory=threading.Event)
    # the run's counters, for the outcomes of a group cut short by a fatal error or an
    # interrupt: the raise returns none of them
    count: Callable[[UnitOutcome], None] = _uncounted


def _logged(unit: ClaimedUnit, outcome: UnitOutcome) -> UnitOutcome:
    """One line in the run's log per unit outcome: what `--log-file` is kept for."""
    where = f"dataset={unit.dataset} ticker={unit.ticker} period={unit.period_start}..{unit.period_end}"
    if outcome.error_class:
        log.info("unit: %s state=%s class=%s", where, outcome.state, outcome.error_class)
    else:
        log.info("unit: %s state=%s rows=%d", where, outcome.state, outcome.bars)
    return outcome


def withdraw_file(unit: ClaimedUnit, job: UnitJob, still_ours: Callable[[], bool]) -> None:
    """A unit fetched again that has no bars now: its old file moved to `.quarantine/`
    (never deleted; LeaseLost when the unit is no longer ours), and the run says where, on
    stderr and in its log: the bars once downloaded are there, outside the dataset's folder."""
    assert unit.previous_file is not None
    kept = job.store.withdraw_unit(unit.previous_file, still_ours=still_ours)
    if kept is not None:
        log.warning(
            "unit: dataset=%s ticker=%s period=%s..%s has no bars now (empty_confirmed): its old "
            "file is kept aside as %s, outside the dataset's folder (no read or audit takes it)",
            unit.dataset,
            unit.ticker,
            unit.period_start,
            unit.period_end,
            job.store.url_of(kept),
        )


def process_units(
    units: Sequence[ClaimedUnit], job: UnitJob, spent: FetchCost | None = None
) -> list[UnitOutcome]:
    """Fetch, write and settle a group of claimed units (same dataset and ticker,
    consecutive periods; one unit is a group too), in time order.

    Pages arrive in time order, so a unit is complete as soon as a page goes past its last
    day: it is written and settled at once and its bars dropped. Memory stays about one
    page plus one unit however long the group. If the fetch then fails, the units not
    yet settled are `failed` with the error's class, or back in the queue for a transient
    error with attempts left; a permanent error on several units is asked again unit by
    unit (e.g. a 403 for the early months only). A stop request gives them back as
    pending; so does a fatal error (bad key, unwritable disk), which is then re-raised.
    Each settled unit is charged the requests made since the previous one settled; `spent`
    carries what a group spent before this unit was asked again on its own.

    The API may answer a range that straddles the plan's history with only the entitled
    part, so the units of a group before its first bar are not taken as empty: each is
    asked again on its own (a 403 fails it, an empty answer confirms it), unless
    the symbol's listing windows explain it (it lies outside every one of them). Their outcomes come last.
    """
    if job.flatfiles is not None:  # the flat-file route (`run --source flatfiles`)
        from polyledger.flatfiles.units import process_flat

        return process_flat(units, job, job.flatfiles)
    head, last = units[0], units[-1]
    spec = datasets.get(head.dataset)
    if spec.timespan is None:
        return [_process_whole_unit(unit, spec, job) for unit in units]
    spent = spent if spent is not None else FetchCost()
    progress = _Progress(units, job, spent)
    try:
        datasets.check_key(spec, head.ticker)  # a hand-edited ledger must not steer a path or a URL
        # each page shaped and its units' files encoded in the slot it was decoded in, given
        # back before their I/O and the next request: only as many pages as cores are held
        # decoded (polygon/cores.py)
        with cores.PAGE_WORK.keeping():
            for page in iter_pages(
                job.client,
                head.ticker,
                spec.timespan,
                head.period_start,
                last.period_end,
                job.adjusted,
                spent,
            ):
                stray = bars_outside(page, head.period_start, last.period_end)
                if stray:  # never let a mislabelled answer pass as an empty month
                    raise ProtocolError(
                        f"{stray} bars outside the requested dates", error_class="out_of_range"
                    )
                progress.add_page(page)
                del page  # the page lives on in `progress` only as long as it needs it
                cores.PAGE_WORK.release_kept()
        progress.finish()
        progress.ask_alone()
        return progress.outcomes
    except PermanentError as exc:
        if len(progress.waiting) > 1:
            progress.ask_alone()
            return progress.outcomes
        return progress.outcomes + progress.fail(exc)
    except FetchError as exc:
        # a transient failure (a 503, a timeout) says nothing against the pages before it:
        # the months they completed are kept; only an answer that contradicts itself
        # (a PermanentError, above) sends them to be asked alone
        _keep_encoded(progress, job)
        return progress.outcomes + progress.fail(exc)
    except Stopped:
        # a stop is not the units' fault: their attempt is not counted against --max-attempts;
        # the months already complete are kept, the rest go back
        _keep_encoded(progress, job)
        return progress.outcomes + _release(progress.waiting, job, undo=True)
    except (FatalRunError, KeyboardInterrupt):
        _give_back_raising(progress.waiting, job, progress.outcomes)
        raise
    except Exception as exc:  # a bug must fail the units visibly, never leave them running
        return progress.outcomes + progress.fail(exc)


class _Progress:
    """The units of a group still waiting for their bars, and the bars not yet written."""

    def __init__(self, units: Sequence[ClaimedUnit], job: UnitJob, spent: FetchCost) -> None:
        self.waiting = list(units)
        self.job = job
        self.spent = spent
        self.outcomes: list[UnitOutcome] = []
        self._buffer: list[pl.DataFrame] = []
        self._charged = (0, 0)  # requests and bytes already charged to settled units
        # the symbol's listings (each bar's security_id; which empty days they explain), read
        # once the answer begins (`_read_listings`) and again for each unit's file
        self.listings: list[Listing] = []
        # a group's answer may be clipped at the start (see process_units); one unit's empty
        # answer is its own
        self._doubt_leading = len(units) > 1
        self._first_day: dt.date | None = None  # of the group's first bar
        # the units the last page completed, encoded, with the cost up to that page: stored
        # and settled once the next page is checked to follow it (or at the end)
        self._encoded: tuple[list[ClaimedUnit], list[_UnitFile], tuple[int, int, str | None]] | None = None

    def add_page(self, page: pl.DataFrame) -> None:
        # this page was checked to follow the last one when it was fetched (polygon/fetch.py):
        # no later bar can be the units that page completed, so they settle now; a page going
        # back fails the group before they do, and they are asked alone (never done with a hole)
        previous, self._encoded = self._encoded, None
        self._buffer.append(page)
        if self._first_day is None:
            self._first_day = et_date_of_ms(int(page.get_column("t").min()))  # type: ignore[arg-type]
            self.job.entitled.note(self.waiting[0].dataset, self._first_day)
            self._read_listings()
            self._settle_explained(self._leading())
            self._probe_late_start()
        last_day = et_date_of_ms(int(page.get_column("t").max()))  # type: ignore[arg-type]
        held = previous[0] if previous else []
        complete = [unit for unit in self._trusted() if unit.period_end < last_day and unit not in held]
        if complete:
            # encoded now, in the page's slot, so the page itself is let go before the next
            # request (only as many pages as cores are held decoded: polygon/cores.py)
            files = self._encode(complete)
            self._encoded = (complete, files, (self.spent.requests, self.spent.bytes, self.spent.request_id))
        # the page's CPU work is done: its core goes on while the files are written
        cores.PAGE_WORK.release_kept()
        if previous:
            self._store(*previous)  # charged what was spent up to their page

    def finish(self) -> None:
        if self._first_day is None:  # no bar at all: every unit is before the first bar
            self._read_listings()
            self._settle_explained(self._leading())
            if not self._doubt_leading and self.waiting:
                # one unit's empty answer: its own, unless its range may straddle the plan's
                # history (then clipped to nothing): its first day asked alone says which
                self._settle_explained(self.waiting)
                if self.waiting:
                    unit = self.waiting[0]
                    self._probe_first_day(unit, unit.period_end, unit.period_end)
        self.store_encoded()
        trusted = self._ended(self._trusted())
        if trusted:
            self._settle(trusted)

    def _ended(self, units: list[ClaimedUnit]) -> list[ClaimedUnit]:
        """The units the answer ended in whose last day had ended (its next US/Eastern
        midnight passed) by the API's clock when it last answered (its Date header); the
        others are failed `not_ended`, a transient error: an API whose today lies inside a
        unit sends that day's bars so far, or none (plan refuses a day not yet ended by this
        machine's clock, but the API's may be behind it), and the unit must settle neither
        `done` with them nor `empty_confirmed`. Units a later page completed never get here."""
        ended = []
        for unit in units:
            early = not_ended(unit, self.spent.served_at)
            if early is None:
                ended.append(unit)
                continue
            self.waiting.remove(unit)
            self.outcomes.append(_settle_failure(unit, self.job, self._charge(), early))
        return ended

    def _before_first_bar(self, unit: ClaimedUnit) -> bool:
        """Whether the group's answer may be clipped for this unit: before its first bar
        (every unit, while no bar came)."""
        return self._doubt_leading and (self._first_day is None or unit.period_end < self._first_day)

    def _leading(self) -> list[ClaimedUnit]:
        return [unit for unit in self.waiting if self._before_first_bar(unit)]

    def _trusted(self) -> list[ClaimedUnit]:
        return [unit for unit in self.waiting if not self._before_first_bar(unit)]

    def _read_listings(self) -> None:
        """The symbol's windows read again once the answer begins (its first page, or its
        empty end), before they explain any unit (`_settle_explained`, `_probe_first_day`):
        a plan that changed them since the group began queues again only settled units
        (`Ledger.reset_relisted`), not these."""
        self.listings = self.job.ledger.listings_of(self.waiting[0].ticker)

    def _settle_explained(self, leading: list[ClaimedUnit]) -> None:
        """Settle empty the leading units the listing windows explain; the others stay
        waiting, for ask_alone."""
        units = [u for u in leading if outside_every_listing(self.listings, u.period_start, u.period_end)]
        if units:
            self._settle(units)

    def _probe_late_start(self) -> None:
        """The unit holding the first bar may itself straddle the plan's history: when that
        bar comes after the unit's first trading day (and its listing does not explain it),
        the days before it may have been clipped off (`_probe_first_day`)."""
        assert self._first_day is not None
        holding = [unit for unit in self.waiting if unit.period_start <= self._first_day <= unit.period_end]
        if holding:
            self._probe_first_day(holding[0], self._first_day - dt.timedelta(days=1), self._first_day)

    def _probe_first_day(self, unit: ClaimedUnit, last: dt.date, listed_on: dt.date) -> None:
        """Days [unit's first trading day (or, when a listing holding `listed_on` starts
        inside the unit, that listing's), `last`] came back without a bar:
        unless a bar was seen on or before the first of them (`EntitledFrom`), ask for that
        first day alone. A single day is wholly inside the plan's history or wholly before
        it (a 403): then the answer was clipped and the unit is `failed` (not_entitled),
        never `done` without its first days nor `empty_confirmed`; a bar there means the
        answer left it out (`clipped`, asked again later); none: the empty days are real."""
        start = unit.period_start
        for listing in self.listings:  # a listing starting inside the unit explains its first days
            if listing.covers(listed_on) and listing.first_day is not None and listing.first_day > start:
                # unless another listing of the symbol (a reused symbol's earlier company)
                # traded on some of them: then they are asked as any unit's first days
                if outside_every_listing(self.listings, start, listing.first_day - dt.timedelta(days=1)):
                    start = listing.first_day
        days = trading_days(start, last)
        if not days or self.job.entitled.covers(unit.dataset, days[0]):
            return
        spec = datasets.get(unit.dataset)
        assert spec.timespan is not None
        try:
            found = sum(
                page.height
                for page in iter_pages(
                    self.job.client,
                    unit.ticker,
                    spec.timespan,
                    days[0],
                    days[0],
                    self.job.adjusted,
                    self.spent,
                )
            )
        except (PermanentError, TransientError) as exc:
            self.waiting.remove(unit)
            self.outcomes.append(_settle_failure(unit, self.job, self._charge(), exc))
            return
        self.job.entitled.note(unit.dataset, days[0])  # a 200: the day is inside the history
        if found:
            self.waiting.remove(unit)
            missing = TransientError(
                f"{found} bars of {days[0]} were left out of the answer for {days[0]}..{last}",
                error_class="clipped",
            )
            self.outcomes.append(_settle_failure(unit, self.job, self._charge(), missing))

    def ask_alone(self) -> None:
        """Each unit still waiting asked again on its own (after a permanent error, or before
        the first bar and unexplained); the first carries what the group spent that no
        settled unit was charged, so every request is charged once."""
        try:
            while self.waiting:
                unit = self.waiting.pop(0)  # popped first: its own call releases it on a fatal error
                requests, size = self.spent.requests - self._charged[0], self.spent.bytes - self._charged[1]
                self._charged = (self.spent.requests, self.spent.bytes)
                carried = FetchCost(requests=requests, bytes=size, request_id=self.spent.request_id)
                self.outcomes.extend(process_units([unit], self.job, carried))
        except (FatalRunError, KeyboardInterrupt):
            # asked alone from process_units' handler of the group's error, whose own release
            # of the waiting units does not see this: the rest go back to pending here, and
            # the group's outcomes are counted here, once (the unit asked counted its own)
            _give_back_raising(self.waiting, self.job, self.outcomes)
            self.waiting, self.outcomes = [], []
            raise

    def _settle(self, units: list[ClaimedUnit]) -> None:
        self._store(units, self._encode(units))

    def _encode(self, units: list[ClaimedUnit]) -> list[_UnitFile]:
        """The units' files, from the buffered pages (which keep only what comes after them)."""
        ticker = units[0].ticker
        # read again now: a plan may have changed the listings since the group began (it
        # queues again only units already settled, not these)
        self.listings = self.job.ledger.listings_of(ticker)
        periods = [(unit.period_start, unit.period_end) for unit in units]
        with cores.PAGE_WORK.slot():  # the one its page was decoded in, or one taken now
            raw = pl.concat(self._buffer) if self._buffer else pl.DataFrame()
            files = _encode(units, split_by_unit(raw, ticker, periods, self.listings), self.job)
            if raw.height and len(self.waiting) > len(units):
                after = et_midnight_ms(units[-1].period_end + dt.timedelta(days=1))
                self._buffer = [raw.filter(pl.col("t") >= after)]
            else:
                self._buffer = []
            del raw
        # the page's CPU work is done and it is no longer held: its core goes to the next
        # page while these files are written and settled (fsyncs, the ledger)
        cores.PAGE_WORK.release_kept()
        return files

    def _store(
        self,
        units: list[ClaimedUnit],
        files: list[_UnitFile],
        upto: tuple[int, int, str | None] | None = None,
    ) -> None:
        self.outcomes.extend(_store(units, files, self.job, [self._charge(upto) for _ in units]))
        for unit in units:
            self.waiting.remove(unit)

    def store_encoded(self) -> None:
        if self._encoded is not None:
            units, files, upto = self._encoded
            self._encoded = None
            self._store(units, files, upto)  # charged what was spent up to their page

    def _charge(self, upto: tuple[int, int, str | None] | None = None) -> AttemptRecord:
        """The requests and bytes spent since the last charge (up to `upto`: the cost as it
        stood at a page, when its units settle at the next one)."""
        requests, size, request_id = upto or (self.spent.requests, self.spent.bytes, self.spent.request_id)
        charge = AttemptRecord(
            requests=requests - self._charged[0], bytes=size - self._charged[1], request_id=request_id
        )
        self._charged = (requests, size)
        return charge

    def fail(self, exc: Exception) -> list[UnitOutcome]:
        charge = self._charge()
        outcomes = [
            _settle_failure(unit, self.job, charge if index == 0 else AttemptRecord(), exc)
            for index, unit in enumerate(self.waiting)
        ]
        self.waiting = []
        return outcomes


def _settle_failure(unit: ClaimedUnit, job: UnitJob, charge: AttemptRecord, exc: Exception) -> UnitOutcome:
    if isinstance(exc, FetchError):
        error_class = exc.error_class
        http_status, request_id = exc.http_status, exc.request_id or charge.request_id
    else:
        error_class = "invalid_ticker" if isinstance(exc, InputError) else f"internal:{type(exc).__name__}"
        http_status, request_id = None, charge.request_id
    attempt = AttemptRecord(
        requests=charge.requests,
        bytes=charge.bytes,
        http_status=http_status,
        request_id=request_id,
        error_class=error_class,
        error=redact(str(exc))[:500],
    )
    try:
        if isinstance(exc, TransientError) and unit.attempts < job.max_attempts:
            job.ledger.requeue(unit, attempt, job.run_id)
            return _logged(unit, UnitOutcome("requeued", 0, charge.requests, error_class))
        job.ledger.settle_failed(unit, attempt, job.run_id)
        return _logged(unit, UnitOutcome("failed", 0, charge.requests, error_class))
    except LeaseLost:
        return _logged(unit, UnitOutcome("lost", 0, charge.requests))


@dataclass(frozen=True)
class _UnitFile:
    """A unit's share of an answer, encoded: its file (None: no bars) and what its attempt
    records, without the bars themselves."""

    encoded: EncodedUnit | None
    bars: int
    duplicates: int
    unattributed: Unattributed | None


def _encode(units: Sequence[ClaimedUnit], unit_bars: Sequence[UnitBars], job: UnitJob) -> list[_UnitFile]:
    return [
        _UnitFile(
            job.store.encode_unit(
                unit.dataset, unit.ticker, unit.period_start, share.bars, adjusted=job.adjusted
            )
            if share.bars.height
            else None,
            share.bars.height,
            share.duplicates,
            share.unattributed,
        )
        for unit, share in zip(units, unit_bars, strict=True)
    ]


def _store(
    units: Sequence[ClaimedUnit],
    files: Sequence[_UnitFile],
    job: UnitJob,
    charges: Sequence[AttemptRecord],
) -> list[UnitOutcome]:
    """Store each unit's file, then settle them all in one ledger transaction. Files are
    in place before the ledger says done: never a done unit without its file. A unit
    whose lease ran out is not written (its new owner's file stays) and is `lost`."""
    fetched, lost = [], set()
    for unit, file, charge in zip(units, files, charges, strict=True):
        attempt = AttemptRecord(
            requests=charge.requests,
            bytes=charge.bytes,
            bars=file.bars,
            request_id=charge.request_id,
            duplicates=file.duplicates,
        )
        try:
            ours = partial(job.ledger.still_holds, unit)
            stored = job.store.put_unit(file.encoded, still_ours=ours) if file.encoded is not None else None
            if stored is None and unit.previous_file:
                withdraw_file(unit, job, ours)
        except LeaseLost:
            lost.add(unit.id)
            stored = None
        fetched.append(FetchedUnit(unit, attempt, stored, file.unattributed))
    settled = iter(
        job.ledger.settle_fetched([f for f in fetched if f.unit.id not in lost], job.adjusted, job.run_id)
    )
    still_ours = [item.unit.id not in lost and next(settled) for item in fetched]
    return [
        _logged(
            item.unit,
            UnitOutcome(
                ("done" if item.stored else "empty_confirmed") if ours else "lost",
                item.attempt.bars if ours else 0,
                item.attempt.requests,
            ),
        )
        for item, ours in zip(fetched, still_ours, strict=True)
    ]


def _write(unit: ClaimedUnit, frame: pl.DataFrame, job: UnitJob, adjusted: bool | None) -> StoredFile:
    """The unit's file, written only while the worker still holds its lease (LeaseLost if not)."""
    return job.store.write_unit(
        unit.dataset,
        unit.ticker,
        unit.period_start,
        frame,
        adjusted=adjusted,
        still_ours=lambda: job.ledger.still_holds(unit),
    )


def not_ended(unit: ClaimedUnit, served_at: float | None) -> TransientError | None:
    """The error of a unit whose last day had not ended (its next US/Eastern midnight) by
    the API's clock when it answered (`served_at`, its Date header; None: it sent none, or
    the answer may be trusted), else None."""
    if served_at is None or served_at * 1000 >= et_midnight_ms(unit.period_end + dt.timedelta(days=1)):
        return None
    api_day = et_date_of_ms(int(served_at * 1000))
    return TransientError(
        f"the API answered on {api_day} (US/Eastern, its Date header), before {unit.period_end} "
        "had ended: its bars may be incomplete",
        error_class="not_ended",
    )


def _process_whole_unit(unit: ClaimedUnit, spec: datasets.DatasetSpec, job: UnitJob) -> UnitOutcome:
    """Fetch, write and settle one unit fetched whole (splits, dividends, details, grouped
    daily bars), under the range bars' rules: transient failures go back in the queue while
    attempts remain, permanent ones fail the unit with their class, fatal ones give it back
    and stop the run."""
    assert spec.fetch_unit is not None
    spent = FetchCost()
    try:
        datasets.check_key(spec, unit.ticker)
        frame = spec.fetch_unit(job.client, unit, job.adjusted, spent)
        early = not_ended(unit, spent.served_at) if unit.dataset in BAR_DATASETS else None
        if early is not None:  # a day of bars (grouped daily) the API's clock had not ended
            raise early
        if spec.after_fetch is not None:
            frame = spec.after_fetch(job.ledger, job.store, unit, frame)
        adjusted = job.adjusted if spec.adjustable else None
        stored = _write(unit, frame, job, adjusted) if frame.height else None
        attempt = AttemptRecord(
            requests=spent.requests, bytes=spent.bytes, bars=frame.height, request_id=spent.request_id
        )
        (ours,) = job.ledger.settle_fetched([FetchedUnit(unit, attempt, stored)], adjusted, job.run_id)
        state = ("done" if stored else "empty_confirmed") if ours else "lost"
        return _logged(unit, UnitOutcome(state, frame.height if ours else 0, spent.requests))
    except LeaseLost:  # the unit has a new owner: its file is theirs to write
        return _logged(unit, UnitOutcome("lost", 0, spent.requests))
    except Stopped:
        return _release([unit], job, undo=True)[0]
    except (FatalRunError, KeyboardInterrupt):
        _give_back_raising([unit], job)
        raise
    except (FetchError, InputError) as exc:
        charge = AttemptRecord(requests=spent.requests, bytes=spent.bytes, request_id=spent.request_id)
        return _settle_failure(unit, job, charge, exc)


def _keep_encoded(progress: _Progress, job: UnitJob) -> None:
    """Store the months a page completed, from a handler of the group's end: a fatal error
    meanwhile (a full disk) gives the group back before it is raised, as in the group."""
    try:
        progress.store_encoded()
    except (FatalRunError, KeyboardInterrupt):
        _give_back_raising(progress.waiting, job, progress.outcomes)
        raise


def _give_back_raising(
    units: Sequence[ClaimedUnit], job: UnitJob, settled: Sequence[UnitOutcome] = ()
) -> None:
    """A fatal error or an interrupt, about to be raised: the run stops first (no other
    worker claims these units again), they go back to pending, and what the group settled
    and gave back is counted, once each, since the raise returns nothing."""
    job.stop.set()
    for outcome in [*settled, *_release(units, job, undo=True)]:
        job.count(outcome)


def _release(units: Sequence[ClaimedUnit], job: UnitJob, *, undo: bool) -> list[UnitOutcome]:
    for unit in units:
        job.ledger.release(unit, undo_attempt=undo)
    return [_logged(unit, UnitOutcome("released")) for unit in units]

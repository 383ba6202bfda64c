"""One group of units, start to finish: fetch every page of their range once, split the
bars by unit, write each unit's file, settle each unit.

A group is consecutive months (or years) of one ticker that a single request range can
serve: the ledger's bookkeeping grain is the unit, not the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from polyledger.errors import (
    FatalRunError,
    FetchError,
    InputError,
    LeaseLost,
    PermanentError,
    ProtocolError,
    TransientError,
)
from polyledger.ledger import AttemptRecord, ClaimedUnit, Ledger
from polyledger.periods import DATASETS
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchedBars, fetch_unit_bars
from polyledger.secrets import redact
from polyledger.storage import BarStore, bars_for_unit, bars_outside
from polyledger.universe import validate_ticker


@dataclass(frozen=True)
class UnitOutcome:
    state: str  # done | empty_confirmed | failed | requeued | released | lost
    bars: int = 0
    requests: int = 0
    error_class: str | None = None


@dataclass(frozen=True)
class UnitJob:
    """What every unit of a run shares."""

    client: PolygonClient
    ledger: Ledger
    store: BarStore
    adjusted: bool
    run_id: str | None = None
    max_attempts: int = 3


def process_units(units: Sequence[ClaimedUnit], job: UnitJob) -> list[UnitOutcome]:
    """Fetch, write and settle a group of claimed units (same dataset and ticker,
    consecutive periods; one unit is a group too).

    Fetch errors settle every unit as `failed` with their class, except a transient one
    with attempts left, which puts the unit back in the queue. A stop request gives the
    units back as pending; so does a fatal error (bad key, unwritable disk), which is
    then re-raised so the run stops. A unit whose lease was lost meanwhile is left alone.
    The group's requests are counted on its first unit.
    """
    fetched = FetchedBars()
    outcomes: list[UnitOutcome] = []
    try:
        bars = _fetch(units, job, fetched)
        if isinstance(bars, list):
            return bars  # the fetch failed: every unit is settled already
        if isinstance(bars, PermanentError):
            # e.g. 403 for the range's early months only: ask unit by unit, so one
            # unentitled month does not fail the months that are fine
            return [outcome for unit in units for outcome in process_units([unit], job)]
        for index, unit in enumerate(units):
            outcomes.append(_store(unit, bars, job, fetched if index == 0 else None))
        return outcomes
    except Stopped:
        return outcomes + _release(units[len(outcomes) :], job, undo=fetched.requests == 0, state="released")
    except (FatalRunError, KeyboardInterrupt):
        _release(units[len(outcomes) :], job, undo=True, state="released")
        raise


def _fetch(units: Sequence[ClaimedUnit], job: UnitJob, fetched: FetchedBars):  # type: ignore[no-untyped-def]
    """The group's raw bars; or, when the fetch failed, the list of settled outcomes (or
    the permanent error of a group, which is better asked unit by unit)."""
    head, last = units[0], units[-1]
    timespan, _grain = DATASETS[head.dataset]
    try:
        validate_ticker(head.ticker)  # a hand-edited ledger must not steer a path or a URL
        fetch_unit_bars(
            job.client, head.ticker, timespan, head.period_start, last.period_end, job.adjusted, out=fetched
        )
        raw = fetched.bars()
        stray = bars_outside(raw, head.period_start, last.period_end)
        if stray:  # never let a mislabelled answer pass as an empty month
            raise ProtocolError(f"{stray} bars outside the requested dates", error_class="out_of_range")
        return raw
    except PermanentError as exc:
        if len(units) > 1:
            return exc
        return [_settle_failure(head, job, fetched, exc, True)]
    except FetchError as exc:
        return [_settle_failure(unit, job, fetched, exc, index == 0) for index, unit in enumerate(units)]
    except (Stopped, FatalRunError):
        raise
    except Exception as exc:  # a bug must fail the units visibly, never leave them running
        return [_settle_failure(unit, job, fetched, exc, index == 0) for index, unit in enumerate(units)]


def _settle_failure(
    unit: ClaimedUnit, job: UnitJob, fetched: FetchedBars, exc: Exception, first: bool
) -> UnitOutcome:
    if isinstance(exc, FetchError):
        error_class = exc.error_class
        http_status, request_id = exc.http_status, exc.request_id or fetched.request_id
    else:
        error_class = "invalid_ticker" if isinstance(exc, InputError) else f"internal:{type(exc).__name__}"
        http_status, request_id = None, None
    requests = fetched.requests if first else 0
    attempt = AttemptRecord(
        requests=requests,
        bytes=fetched.bytes if first else 0,
        http_status=http_status,
        request_id=request_id,
        error_class=error_class,
        error=redact(str(exc))[:500],
    )
    try:
        if isinstance(exc, TransientError) and unit.attempts < job.max_attempts:
            job.ledger.requeue(unit, attempt, job.run_id)
            return UnitOutcome("requeued", 0, requests, error_class)
        job.ledger.settle_failed(unit, attempt, job.run_id)
        return UnitOutcome("failed", 0, requests, error_class)
    except LeaseLost:
        return UnitOutcome("lost", 0, requests)


def _store(unit: ClaimedUnit, raw, job: UnitJob, fetched: FetchedBars | None) -> UnitOutcome:  # type: ignore[no-untyped-def]
    """Keep the unit's own bars, write its file, settle it. The file is in place before
    the ledger says done: never a done unit without its file."""
    bars = bars_for_unit(raw, unit.ticker, unit.period_start, unit.period_end)
    requests = fetched.requests if fetched else 0
    attempt = AttemptRecord(
        requests=requests,
        bytes=fetched.bytes if fetched else 0,
        bars=bars.height,
        request_id=fetched.request_id if fetched else None,
    )
    try:
        if bars.height == 0:
            job.ledger.settle_empty(unit, job.adjusted, attempt, job.run_id)
            return UnitOutcome("empty_confirmed", 0, requests)
        stored = job.store.write_unit(unit.dataset, unit.ticker, unit.period_start, bars)
        job.ledger.settle_done(unit, stored, job.adjusted, attempt, job.run_id)
        return UnitOutcome("done", bars.height, requests)
    except LeaseLost:
        return UnitOutcome("lost", 0, requests)


def _release(units: Sequence[ClaimedUnit], job: UnitJob, *, undo: bool, state: str) -> list[UnitOutcome]:
    for unit in units:
        job.ledger.release(unit, undo_attempt=undo)
    return [UnitOutcome(state) for _ in units]

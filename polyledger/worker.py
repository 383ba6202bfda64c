"""One unit, start to finish: fetch every page, keep the unit's bars, write, settle."""

from __future__ import annotations

from dataclasses import dataclass

from polyledger.errors import FatalRunError, FetchError, InputError, LeaseLost, TransientError
from polyledger.ledger import AttemptRecord, ClaimedUnit, Ledger
from polyledger.periods import DATASETS
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchedBars, fetch_unit_bars
from polyledger.secrets import redact
from polyledger.storage import BarStore, bars_for_unit
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


def process_unit(unit: ClaimedUnit, job: UnitJob) -> UnitOutcome:
    """Fetch, write and settle one claimed unit.

    Fetch errors settle the unit as `failed` with their class, except a transient one
    with attempts left, which puts the unit back in the queue. A stop request gives the
    unit back as pending; so does a fatal error (bad key, unwritable disk), which is then
    re-raised so the run stops. If the unit's lease was lost meanwhile, nothing is settled.
    """
    fetched = FetchedBars()
    try:
        return _attempt(unit, job, fetched)
    except LeaseLost:
        return UnitOutcome("lost", 0, fetched.requests)
    except Stopped:
        job.ledger.release(unit, undo_attempt=fetched.requests == 0)
        return UnitOutcome("released", 0, fetched.requests)
    except FatalRunError:
        job.ledger.release(unit, undo_attempt=True)
        raise


def _attempt(unit: ClaimedUnit, job: UnitJob, fetched: FetchedBars) -> UnitOutcome:
    timespan, _grain = DATASETS[unit.dataset]
    try:
        validate_ticker(unit.ticker)  # a hand-edited ledger must not steer a path or a URL
        fetch_unit_bars(
            job.client, unit.ticker, timespan, unit.period_start, unit.period_end, job.adjusted, out=fetched
        )
        bars = bars_for_unit(fetched.bars(), unit.ticker, unit.period_start, unit.period_end)
    except FetchError as exc:
        attempt = AttemptRecord(
            requests=fetched.requests,
            bytes=fetched.bytes,
            http_status=exc.http_status,
            request_id=exc.request_id or fetched.request_id,
            error_class=exc.error_class,
            error=redact(str(exc))[:500],
        )
        if isinstance(exc, TransientError) and unit.attempts < job.max_attempts:
            job.ledger.requeue(unit, attempt, job.run_id)
            return UnitOutcome("requeued", 0, fetched.requests, exc.error_class)
        job.ledger.settle_failed(unit, attempt, job.run_id)
        return UnitOutcome("failed", 0, fetched.requests, exc.error_class)
    except (Stopped, FatalRunError):
        raise
    except Exception as exc:  # a bug must fail the unit visibly, never leave it running
        error_class = "invalid_ticker" if isinstance(exc, InputError) else f"internal:{type(exc).__name__}"
        attempt = AttemptRecord(
            requests=fetched.requests, error_class=error_class, error=redact(str(exc))[:500]
        )
        job.ledger.settle_failed(unit, attempt, job.run_id)
        return UnitOutcome("failed", 0, fetched.requests, error_class)

    attempt = AttemptRecord(
        requests=fetched.requests, bytes=fetched.bytes, bars=bars.height, request_id=fetched.request_id
    )
    if bars.height == 0:
        job.ledger.settle_empty(unit, job.adjusted, attempt, job.run_id)
        return UnitOutcome("empty_confirmed", 0, fetched.requests)
    # the file is in place before the ledger says done: never a done unit without its file
    stored = job.store.write_unit(unit.dataset, unit.ticker, unit.period_start, bars)
    job.ledger.settle_done(unit, stored, job.adjusted, attempt, job.run_id)
    return UnitOutcome("done", bars.height, fetched.requests)

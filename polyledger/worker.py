"""One unit, start to finish: fetch every page, keep the unit's bars, write, settle."""

from __future__ import annotations

from dataclasses import dataclass

from polyledger.errors import FatalRunError, FetchError, LeaseLost
from polyledger.ledger import AttemptRecord, ClaimedUnit, Ledger
from polyledger.periods import DATASETS
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchedBars, fetch_unit_bars
from polyledger.secrets import redact
from polyledger.storage import BarStore, bars_for_unit


@dataclass(frozen=True)
class UnitOutcome:
    state: str  # done | empty_confirmed | failed | released | lost
    bars: int = 0
    requests: int = 0
    error_class: str | None = None


def process_unit(
    unit: ClaimedUnit,
    *,
    client: PolygonClient,
    ledger: Ledger,
    store: BarStore,
    adjusted: bool,
    run_id: str | None = None,
) -> UnitOutcome:
    """Fetch, write and settle one claimed unit.

    Fetch errors settle the unit as `failed` with their class. A stop request or a
    fatal error (bad key, unwritable disk) gives the unit back as pending and, for a
    fatal error, re-raises so the run stops.
    """
    timespan, _grain = DATASETS[unit.dataset]
    fetched = FetchedBars()
    try:
        fetch_unit_bars(
            client, unit.ticker, timespan, unit.period_start, unit.period_end, adjusted, out=fetched
        )
        bars = bars_for_unit(fetched.bars(), unit.ticker, unit.period_start, unit.period_end)
        attempt = AttemptRecord(
            requests=fetched.requests, bytes=fetched.bytes, bars=bars.height, request_id=fetched.request_id
        )
        if bars.height == 0:
            ledger.settle_empty(unit, adjusted, attempt, run_id)
            return UnitOutcome("empty_confirmed", 0, fetched.requests)
        stored = store.write_unit(unit.dataset, unit.ticker, unit.period_start, bars)
        ledger.settle_done(unit, stored, adjusted, attempt, run_id)
        return UnitOutcome("done", bars.height, fetched.requests)
    except Stopped:
        ledger.release(unit, undo_attempt=fetched.requests == 0)
        return UnitOutcome("released", 0, fetched.requests)
    except FatalRunError:
        ledger.release(unit, undo_attempt=True)
        raise
    except FetchError as exc:
        attempt = AttemptRecord(
            requests=fetched.requests,
            bytes=fetched.bytes,
            http_status=exc.http_status,
            request_id=exc.request_id or fetched.request_id,
            error_class=exc.error_class,
            error=redact(str(exc))[:500],
        )
        ledger.settle_failed(unit, attempt, run_id)
        return UnitOutcome("failed", 0, fetched.requests, exc.error_class)
    except LeaseLost:
        # our lease expired and the unit moved on; its new owner settles it
        return UnitOutcome("lost", 0, fetched.requests)
    except Exception as exc:  # a bug must fail the unit visibly, not leave it running
        error_class = f"internal:{type(exc).__name__}"
        attempt = AttemptRecord(
            requests=fetched.requests, error_class=error_class, error=redact(str(exc))[:500]
        )
        ledger.settle_failed(unit, attempt, run_id)
        return UnitOutcome("failed", 0, fetched.requests, error_class)

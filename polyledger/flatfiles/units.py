"""A worker's group of units on the flat-file route, under the REST route's rules: a
transient failure goes back to the queue while attempts remain, a permanent one fails the
unit with its class, a fatal one (a 403 from the bucket, an unwritable disk) gives every
unit back and stops the run, a stop gives back the units not yet settled."""

from __future__ import annotations

from collections.abc import Sequence

from polyledger.datasets import FLAT_FILE_DATASETS, check_key, get
from polyledger.datasets.flat_days import ROUTES
from polyledger.errors import FatalRunError, FetchError, InputError, LeaseLost
from polyledger.fetch.units import (
    UnitJob,
    UnitOutcome,
    _give_back_raising,
    _logged,
    _release,
    _settle_failure,
)
from polyledger.flatfiles.job import FlatJob
from polyledger.flatfiles.stage import stage_day
from polyledger.flatfiles.transpose import build_units
from polyledger.ledger import AttemptRecord, ClaimedUnit


def process_flat(units: Sequence[ClaimedUnit], job: UnitJob, flat: FlatJob) -> list[UnitOutcome]:
    """Day units are read one by one; ticker units (one dataset and period) built together."""
    outcomes: dict[int, UnitOutcome] = {}  # by unit id, as each settles
    dataset = units[0].dataset
    try:
        if dataset in FLAT_FILE_DATASETS:
            for unit in units:
                if job.client.stop.is_set():
                    break
                outcomes[unit.id] = _one_day(unit, job, flat)
        elif dataset in ROUTES:
            for unit in units:
                check_key(get(dataset), unit.ticker)
            build_units(units, job, flat, outcomes)
        else:
            raise InputError(f"{dataset} has no flat-file route (minute and day have)")
    except (FatalRunError, KeyboardInterrupt):
        _give_back_raising(_unsettled(units, outcomes), job, list(outcomes.values()))
        raise
    except Exception as exc:  # noqa: BLE001 - FetchError, InputError, or a bug: fail them visibly
        for unit in _unsettled(units, outcomes):
            outcomes[unit.id] = _settle_failure(unit, job, AttemptRecord(), exc)
    return list(outcomes.values()) + _release(_unsettled(units, outcomes), job, undo=True)


def _unsettled(units: Sequence[ClaimedUnit], outcomes: dict[int, UnitOutcome]) -> list[ClaimedUnit]:
    return [unit for unit in units if unit.id not in outcomes]


def _one_day(unit: ClaimedUnit, job: UnitJob, flat: FlatJob) -> UnitOutcome:
    try:
        check_key(get(unit.dataset), unit.ticker)
        return stage_day(unit, job, flat)
    except LeaseLost:
        return _logged(unit, UnitOutcome("lost"))
    except (FetchError, InputError) as exc:
        charge = AttemptRecord(requests=1)
        return _settle_failure(unit, job, charge, exc)

"""Before a flat-file run: units that failed because a day's file was not published yet
queued again (`not_published`: it may be there now), and ticker units whose days must be
read (again) for them (`days_outdated`: read for fewer tickers, deleted under them, or
never planned: queued after the last run planned its days; and `days_unread` with a day
that has no day unit, which earlier versions left failed for good); the day units the
pending ticker units need planned; days staged for a smaller universe than today's
queued again (a ticker planned since is not in them), and days whose staged file was
deleted (`prune`), or that failed, queued again when a pending unit needs them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from polyledger.datasets import MARKET
from polyledger.datasets.flat_days import ROUTES
from polyledger.flatfiles.job import period_of, universe_hash
from polyledger.ledger import Ledger, PlannedUnit, UnitState
from polyledger.periods import stored_date
from polyledger.trading_days import trading_days


@dataclass(frozen=True)
class Prepared:
    days_added: int  # day units planned now
    days_restaged: int  # day units queued again: staged for a smaller universe, or pruned
    unpublished_again: int = 0  # day and ticker units that waited for a file, queued again
    outdated_again: int = 0  # ticker units failed `days_outdated` (days to read for them), queued again
    unplanned_again: int = 0  # ticker units failed `days_unread` for days never planned, queued again


def prepare(ledger: Ledger, targets: Sequence[str]) -> Prepared:
    """For each ticker dataset in `targets` (minute, day): a day unit for every trading day
    of its pending units (a holiday is no unit), and the settled days whose staged
    universe differs from today's, or whose staged file was deleted or that failed while a
    pending unit needs it, back to pending; first, the units that failed for a day not
    published yet, or not read for them (`days_outdated`, `_unread_unplanned`)."""
    added = restaged = unpublished = outdated_units = unplanned = 0
    for target in targets:
        day_dataset = ROUTES[target]
        unpublished += ledger.reset_failed(["not_published"], datasets=[target, day_dataset])
        outdated_units += ledger.reset_failed(["days_outdated"], datasets=[target])
        unplanned += ledger.reset_ids(_unread_unplanned(ledger, target, day_dataset), {UnitState.FAILED})
        days: set[dt.date] = set()
        for start, end in ledger.pending_periods(target):
            days.update(trading_days(start, end))
        added += ledger.add_units(
            PlannedUnit(day_dataset, MARKET, day, day, period_name=day.isoformat()) for day in sorted(days)
        )
        universe = {
            period: universe_hash(tickers) for period, tickers in ledger.tickers_by_period(target).items()
        }
        outdated = [
            row.unit_id
            for row in ledger.flat_file_records(day_dataset)
            if universe.get(period_of(target, stored_date(row.period_start))) != row.universe
        ]
        outdated += ledger.unrecorded_flat_days(day_dataset)  # staged for what is unknown
        restaged += ledger.reset_ids(outdated, {UnitState.DONE, UnitState.EMPTY_CONFIRMED})
        again = ledger.days_to_read_again(target, day_dataset)
        restaged += ledger.reset_ids(again, {UnitState.DONE, UnitState.FAILED})
    return Prepared(added, restaged, unpublished, outdated_units, unplanned)


def _unread_unplanned(ledger: Ledger, target: str, day_dataset: str) -> list[int]:
    """The ids of `target`'s units failed `days_unread` with a trading day that has no day
    unit. Earlier versions failed a unit so when it was queued after its run planned the
    days (today it fails `days_outdated`); no run plans days for a failed unit, so they
    stayed failed. Queued again, their days are planned. Units whose days all have units
    (days really being read elsewhere) are left to `retry`, as before."""
    ids = []
    planned: dict[tuple[dt.date, dt.date], bool] = {}  # the units of one period share the answer
    for row in ledger.failed_with(target, "days_unread"):
        start = stored_date(row.period_start)
        end = stored_date(row.period_end)
        if (start, end) not in planned:
            have = {str(day.period_start)[:10] for day in ledger.flat_days(day_dataset, start, end)}
            planned[start, end] = all(day.isoformat() in have for day in trading_days(start, end))
        if not planned[start, end]:
            ids.append(row.id)
    return ids

"""Ticker units (minute: ticker x month; day: ticker x year) built from staged days.

A batch is units of one dataset and period, tickers in order (`Ledger.claim_same_period`).
A unit is built only when every trading day of its period is read (a day unit `done`, or
`empty_confirmed`: none of the universe traded); otherwise it fails with the day's class
(a missing day file: `missing_file`), or goes back to the queue while days are still
being read (`days_unread`: their day units are pending or running). A day with no day unit
at all is no day being read: the unit was queued after `prepare` planned the run's days
(a `plan` during the run), so it fails `days_outdated` and the next run plans and reads the
day, then builds it. One lazy scan of the period's staged days, filtered to the
batch's run of tickers (whole row groups skipped), serves the batch; each unit's bars then
go through the REST route's own shaping (`bars.split_by_unit`: cut by session date, each
timestamp once with repeats counted, attributed to listings), are written atomically to
the same layout, and settle with source `flatfiles`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import partial
from typing import Any

import polars as pl

from polyledger.bars import BAR_SCHEMA, RENAME, split_by_unit
from polyledger.datasets.flat_days import ROUTES
from polyledger.errors import FetchError, LeaseLost, PermanentError, TransientError, is_transient_class
from polyledger.fetch.units import UnitJob, UnitOutcome, _logged, _settle_failure, withdraw_file
from polyledger.flatfiles.job import FlatJob, period_of
from polyledger.ledger import AttemptRecord, ClaimedUnit, FetchedUnit, iso
from polyledger.periods import stored_date
from polyledger.trading_days import trading_days

SETTLED = ("done", "empty_confirmed")
SETTLE_EVERY = 32  # units settled per ledger transaction (their files are written first)
TO_RAW = {stored: raw for raw, stored in RENAME.items()}


def unread(unit: ClaimedUnit, days: dict[dt.date, Any], staged_for: str | None = None) -> FetchError | None:
    """Why the unit cannot be built yet (None: every trading day of it is read, for the
    universe whose `universe_hash` is `staged_for` when given)."""
    waiting = []
    for day in trading_days(unit.period_start, unit.period_end):
        row = days.get(day)
        if row is None:
            # no day unit at all: nobody is reading it (a host reading a day holds its unit).
            # The unit was queued after `prepare` planned the days (a `plan` during the run,
            # a unit taken back from a dead run): retrying now cannot help, the next run
            # plans the day (`prepare` queues `days_outdated` units again)
            return PermanentError(
                f"no day unit of {day} is planned (the unit was queued after this run planned its days): "
                "the next run reads the day",
                error_class="days_outdated",
            )
        if row.state in SETTLED and staged_for is not None and row.universe != staged_for:
            # read for another universe: a ticker planned since (during this run, or on
            # another host) may be missing from it. The next run reads the day again
            # (`prepare`) and queues this unit again: never built from it as empty
            return PermanentError(
                f"the flat file of {day} was read for other tickers (one planned since): the next run "
                "reads it again",
                error_class="days_outdated",
            )
        if row.state == "failed":
            name = row.error_class or "missing_file"
            kind = TransientError if is_transient_class(name) else PermanentError
            why = "is not published yet" if name == "not_published" else f"failed ({name})"
            return kind(f"the flat file of {day} {why}", error_class=name)
        if row.state == "done" and not row.file_path:
            # its staged file deleted (`prune`, here or on another host) since `prepare`
            # queued what this run reads: never claimed again in this run, read by the next
            return PermanentError(
                f"the staged file of {day} was deleted: the next run reads the day again",
                error_class="days_outdated",
            )
        if row.state not in SETTLED:
            waiting.append(day)  # not read yet (another host is reading it)
    if waiting:
        return TransientError(
            f"{len(waiting)} flat files not read yet (first {waiting[0]})", error_class="days_unread"
        )
    return None


def staged_bars(job: UnitJob, files: Sequence[str], tickers: Sequence[str]) -> dict[str, pl.DataFrame]:
    """{ticker: its staged bars, in time order} for a sorted run of tickers."""
    if not files or not tickers:
        return {}
    wanted = (
        (pl.col("ticker") >= tickers[0]) & (pl.col("ticker") <= tickers[-1]) & pl.col("ticker").is_in(tickers)
    )
    frame = job.store.scan_parquet(list(files)).filter(wanted).collect()
    # files in date order, each sorted by ticker then time: a ticker's rows stay in time order
    return {str(key[0]): part for key, part in frame.partition_by("ticker", as_dict=True).items()}


def to_raw(bars: pl.DataFrame) -> pl.DataFrame:
    """Staged bars -> the page columns `split_by_unit` takes (t in epoch ms)."""
    return bars.select(
        pl.col("timestamp").dt.epoch("ms").alias("t"),
        *[
            pl.col(name).alias(TO_RAW[name])
            for name in ("open", "high", "low", "close", "volume", "vwap", "transactions")
        ],
        "otc",
    )


def build_units(
    units: Sequence[ClaimedUnit], job: UnitJob, flat: FlatJob, outcomes: dict[int, UnitOutcome]
) -> None:
    """Build, write and settle a batch of ticker units of one period from staged days,
    each outcome put in `outcomes` (by unit id) as it settles (the caller settles the
    rest if this raises)."""
    first = units[0]
    day_dataset = ROUTES[first.dataset]
    # the period's tickers as planned now: its days must have been staged for exactly them
    staged_for = flat.universe(job.ledger, first.dataset, period_of(first.dataset, first.period_start))
    start, end = min(u.period_start for u in units), max(u.period_end for u in units)
    # the units' bars are as of this snapshot of their days: one read again after it (another
    # host, while this batch scans the files it lists) makes them stale (`STALE_FLAT`)
    as_of = iso(job.ledger.clock())
    days = {stored_date(row.period_start): row for row in job.ledger.flat_days(day_dataset, start, end)}
    ready = []
    for unit in units:
        problem = unread(unit, days, staged_for)
        if problem is None:
            ready.append(unit)
        else:
            outcomes[unit.id] = _settle_failure(unit, job, AttemptRecord(), problem)
    if not ready:
        return
    files = sorted(
        {
            days[day].file_path
            for unit in ready
            for day in trading_days(unit.period_start, unit.period_end)
            if days[day].file_path
        }
    )
    try:
        by_ticker = staged_bars(job, files, sorted({unit.ticker for unit in ready}))
    except (OSError, pl.exceptions.PolarsError):
        gone = [
            row.id for row in days.values() if row.file_path in files and job.store.surely_gone(row.file_path)
        ]
        if not gone:
            raise
        # a prune stopped between deleting these files and forgetting them: forgotten now,
        # the next run reads the days again (`prepare`) and builds the units again
        job.ledger.forget_staged(gone)
        problem = PermanentError(
            f"{len(gone)} staged day files of the period are gone (a prune stopped before the ledger "
            "forgot them): the next run reads them again",
            error_class="days_outdated",
        )
        for unit in ready:
            outcomes[unit.id] = _settle_failure(unit, job, AttemptRecord(), problem)
        return
    empty = pl.DataFrame(schema=BAR_SCHEMA)
    built: list[FetchedUnit] = []
    for unit in ready:
        try:
            built.append(_build_one(unit, by_ticker.pop(unit.ticker, empty), job, as_of))
        except LeaseLost:
            outcomes[unit.id] = _logged(unit, UnitOutcome("lost"))
        if len(built) >= SETTLE_EVERY:
            _settle(built, job, outcomes)
    _settle(built, job, outcomes)


def _build_one(unit: ClaimedUnit, staged: pl.DataFrame, job: UnitJob, as_of: str) -> FetchedUnit:
    """The unit's file written (its bars shaped as the REST route shapes them)."""
    raw = to_raw(staged)
    share = split_by_unit(
        raw, unit.ticker, [(unit.period_start, unit.period_end)], job.ledger.listings_of(unit.ticker)
    )[0]
    bars = share.bars
    stored = None
    ours = partial(job.ledger.still_holds, unit)
    if bars.height:
        stored = job.store.write_unit(
            unit.dataset, unit.ticker, unit.period_start, bars, adjusted=False, still_ours=ours
        )
    elif unit.previous_file:  # built before with bars the replaced days no longer hold: kept aside
        withdraw_file(unit, job, ours)
    attempt = AttemptRecord(bars=bars.height, duplicates=share.duplicates)
    return FetchedUnit(unit, attempt, stored, share.unattributed, source="flatfiles", as_of=as_of)


def _settle(built: list[FetchedUnit], job: UnitJob, outcomes: dict[int, UnitOutcome]) -> None:
    """Settle the built units in one transaction (their files are in place), and forget them."""
    if not built:
        return
    for item, ours in zip(built, job.ledger.settle_fetched(built, False, job.run_id), strict=True):
        state = ("done" if item.stored else "empty_confirmed") if ours else "lost"
        outcomes[item.unit.id] = _logged(item.unit, UnitOutcome(state, item.attempt.bars if ours else 0, 0))
    built.clear()

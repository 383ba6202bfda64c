"""`run --source flatfiles`: the checks before anything is read, then, a calendar year at a
time, two runs on the ledger's usual machinery (claims, leases, retries, the heartbeat):
the year's day units first, then the ticker units built from them, then the staged days no
unit needs any more deleted (`prune`). A year at a time, so the staged days on disk are at
most a year's, never the whole plan's (they take about what the bars they hold take in
the dataset). A stop or a crash anywhere is resumed by running again: each run re-does
only unsettled units. The units of a dead run (leases expired) are taken back before
`prepare` plans the days, so their days are planned and they are built in this run; a
unit queued once the days are planned (a `plan` during the run, a lease that expires
later) fails `days_outdated` at the build and is built by the next run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyledger.datasets.flat_days import MARKET_PREFIX, ROUTES
from polyledger.defaults import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_WORKERS
from polyledger.errors import InputError
from polyledger.fetch.processes import ProcessRun, processes_wanted
from polyledger.fetch.runner import Run, RunOptions, RunReport, take_back_expired, unsettled_in_scope
from polyledger.flatfiles.prepare import Prepared, prepare
from polyledger.flatfiles.prune import Pruned, prune_staged
from polyledger.flatfiles.source import FlatFilesConfig, FlatFilesSource
from polyledger.ledger import Ledger
from polyledger.storage import BarStore
from polyledger.storage.home import hold_home

REFUSE_ADJUSTED = (
    "flat files are never split-adjusted: only an --unadjusted ledger may read them "
    "(`polyledger run --source flatfiles --unadjusted`), or use --source rest"
)


@dataclass
class FlatRunReport:
    prepared: Prepared
    runs: list[RunReport] = field(default_factory=list)  # two a year: its days, then its units
    pruned: Pruned | None = None  # summed over the years whose two runs finished
    days_left: int = 0  # day units unread when a year's build was not started (--max-units)
    build_skipped: bool = False  # a year's days were not all read: its units were not built
    years: int = 0  # the years with work when the run started
    years_left: int = 0  # of them, not started (--max-units spent at a year's end)
    # {state: units} of the route's datasets, every year, not done or empty when it ended:
    # earlier runs' failures count, as on the REST route
    unsettled: dict[str, int] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return next((r.outcome for r in self.runs if r.outcome != "finished"), "finished")

    @property
    def ok(self) -> bool:
        return self.outcome == "finished" and not self.unsettled


def _summed(before: Pruned | None, now: Pruned) -> Pruned:
    return now if before is None else Pruned(before.deleted + now.deleted, before.kept + now.kept)


def check_request(datasets: Sequence[str], adjusted: bool) -> tuple[str, ...]:
    """The ticker datasets to fill, or one line saying why not."""
    if adjusted:
        raise InputError(REFUSE_ADJUSTED)
    targets = tuple(datasets) or tuple(ROUTES)
    wrong = [name for name in targets if name not in ROUTES]
    if wrong:
        raise InputError(f"--source flatfiles fills {' and '.join(ROUTES)} units, not {', '.join(wrong)}")
    return targets


def run_flatfiles(
    execute: Callable[[Run | ProcessRun], RunReport],
    ledger_path: str,
    data: str,
    *,
    datasets: Sequence[str] = (),
    adjusted: bool = False,
    processes: str = "1",
    log_level: int = logging.INFO,
    log_setup: Callable[[], None] | None = None,
    config: FlatFilesConfig | None = None,
    workers: int = DEFAULT_WORKERS,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_units: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> FlatRunReport:
    """Plan the day units, read them, build the ticker units, delete the staged days no
    unit needs; `execute(run)` runs one (the CLI shows it live)."""
    targets = check_request(datasets, adjusted)
    count = processes_wanted(processes, workers)
    config = config or FlatFilesConfig.from_env()
    with Ledger(ledger_path, create=False) as ledger:
        if ledger.claim_setting("adjusted", "false") != "false":
            raise InputError(f"this ledger holds adjusted bars; {REFUSE_ADJUSTED}")
        store = BarStore(data)
        store.ensure_writable()
        # before a day is staged into a folder of adjusted bars, or of another ledger's
        hold_home(ledger, store, adjusted=False)
        FlatFilesSource(config).probe(f"{MARKET_PREFIX}/")  # a 403 is one line before any claim
        if log_setup is not None:
            log_setup()
        # a dead run's units (kill -9) back to pending first: `prepare` plans the days of
        # pending units only, and a unit taken back later (by the build's claims) finds none
        take_back_expired(ledger, store, lease_seconds)
        report = FlatRunReport(prepare(ledger, targets))
        common: dict[str, Any] = dict(
            workers=workers,
            adjusted=False,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            flatfiles=config,
        )

        def make_run(options: RunOptions) -> Run | ProcessRun:
            options = dataclasses.replace(options, **common)
            if count > 1:  # each phase in `count` processes: the year's days all read before its build
                return ProcessRun(
                    ledger, ledger_path, data, base_url=config.endpoint, options=options,
                    processes=count, log_level=log_level,
                )  # fmt: skip
            return Run(ledger, store, api_key="", base_url=config.endpoint, options=options)

        budget = max_units  # --max-units counts the units of both phases together
        days, months = tuple(ROUTES[name] for name in targets), targets
        years = ledger.open_years(days + months)
        report.years = len(years)
        if not years:  # nothing to read: staged days an earlier run left may still go
            report.pruned = prune_staged(ledger, store, targets)
        for done, year in enumerate(years):
            if budget == 0:  # spent at the end of the year before
                report.years_left = len(years) - done
                break
            window = (dt.date(year, 1, 1), dt.date(year, 12, 31))
            if not _run_year(execute, report, window, (days, months), budget, make_run):
                break
            budget = _left(budget, report.runs[-2:])
            report.pruned = _summed(report.pruned, prune_staged(ledger, store, targets))
        scope = RunOptions(datasets=days + months, flatfiles=config)
        report.unsettled = unsettled_in_scope(ledger, scope)
    return report


def _left(budget: int | None, runs: Sequence[RunReport]) -> int | None:
    """What is left of --max-units after `runs`."""
    return None if budget is None else max(0, budget - sum(sum(r.stats.outcomes.values()) for r in runs))


def _run_year(
    execute: Callable[[Run | ProcessRun], RunReport],
    report: FlatRunReport,
    window: tuple[dt.date, dt.date],
    phases: tuple[tuple[str, ...], tuple[str, ...]],
    budget: int | None,
    make_run: Callable[[RunOptions], Run | ProcessRun],
) -> bool:
    """A year's days, then its ticker units; whether the run goes on to the next year."""
    days, months = phases
    for phase in (days, months):
        last = execute(make_run(RunOptions(datasets=phase, max_units=budget, window=window)))
        report.runs.append(last)
        if last.outcome != "finished":
            return False
        budget = _left(budget, [last])
        if phase is days and (budget == 0 or {"pending", "running"} & set(last.unsettled)):
            # days left to read (a --max-units sample, another host's): a month built now
            # would only go back to the queue `days_unread`, an attempt spent each time
            report.days_left = sum(last.unsettled.get(state, 0) for state in ("pending", "running"))
            report.build_skipped = True
            return False
    return True

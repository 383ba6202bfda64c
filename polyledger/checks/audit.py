"""Completeness, as ledger queries: what is done, what is missing, and why."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from polyledger import coverage, datasets
from polyledger.errors import InputError
from polyledger.ledger import SETTLED, Ledger, UnitState, queries
from polyledger.periods import stored_date

STATES = tuple(state.value for state in UnitState)
EXAMPLES_PER_CLASS = 3
EXIT_WORK_LEFT = 3  # audit's exit code when only pending or running units keep it incomplete


@dataclass
class FailureClass:
    error_class: str
    units: int
    examples: list[str]


@dataclass
class YearCoverage:
    year: str
    units: int
    settled: int  # done or empty_confirmed
    failed: int


@dataclass
class UnattributedBars:
    """A symbol's bars inside no known listing of it (stored with a null security_id):
    the API answered them, but no listing says whose they are."""

    ticker: str
    first_day: str
    last_day: str
    bars: int
    units: int


@dataclass
class UnplannedDays:
    """Trading days of a ticker inside its listing windows that the ledger records as
    planned and no unit covers: between two of its units, inside the range `planned`
    records (the earliest `--from` to the latest `--to` ever given: `plan` was run over two
    ranges with a hole between them, in either order), or asked of a clipped unit a plan
    could not widen while a run held it (`unwidened`). `run` never fetches them; `plan`
    over them (or `sync`) does."""

    ticker: str
    first_day: str
    last_day: str
    trading_days: int


@dataclass
class DatasetAudit:
    dataset: str
    units: int
    rows: int
    by_state: dict[str, int]
    failures: list[FailureClass] = field(default_factory=list)
    tickers: int = 0
    tickers_without_data: list[str] = field(default_factory=list)
    never_attempted: int = 0
    stale_adjusted: int = 0  # adjusted units fetched before a later split of their security
    stale_examples: list[str] = field(default_factory=list)
    # flat files: ticker units built from day files replaced since (or day files replaced)
    stale_flatfiles: int = 0
    by_year: list[YearCoverage] = field(default_factory=list)  # datasets planned over a range only
    unattributed: list[UnattributedBars] = field(default_factory=list)  # bars inside no known listing
    unplanned: list[UnplannedDays] = field(default_factory=list)  # holes inside the planned range

    @property
    def complete(self) -> bool:
        settled = sum(self.by_state[state] for state in SETTLED) == self.units
        return settled and not self.stale_adjusted and not self.stale_flatfiles and not self.unplanned

    @property
    def needs_attention(self) -> bool:
        """Failed or stale units, or days never planned: running again will not fix them by itself."""
        return bool(
            self.by_state[UnitState.FAILED] or self.stale_adjusted or self.stale_flatfiles or self.unplanned
        )


@dataclass
class ListingSummary:
    """The ledger's listings: how many, and where a symbol is not one security."""

    listings: int = 0
    symbols: int = 0
    securities: int = 0
    reused: list[tuple[str, str]] = field(default_factory=list)  # (ticker, its windows and ids)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (security_id, its symbols in order)


@dataclass
class AuditReport:
    datasets: list[DatasetAudit]
    listings: ListingSummary | None = None

    @property
    def complete(self) -> bool:
        return all(d.complete for d in self.datasets)

    @property
    def exit_code(self) -> int:
        """For schedulers: 0 complete; 1 failed or stale units (retry or look into them);
        3 only work left (pending or running units: run again)."""
        if self.complete:
            return 0
        return 1 if any(d.needs_attention for d in self.datasets) else EXIT_WORK_LEFT

    def to_dict(self) -> dict:
        return {
            "complete": self.complete,
            "exit_code": self.exit_code,
            "datasets": [dict(asdict(d), complete=d.complete) for d in self.datasets],
            "listings": asdict(self.listings) if self.listings is not None else None,
        }


def status_counts(ledger: Ledger) -> list[dict]:
    """Units and rows per dataset and state."""
    return [dict(row._mapping) for row in queries.units_by_state(ledger)]


def audit(ledger: Ledger) -> AuditReport:
    """Per dataset: units by state, rows, failures grouped by class with examples,
    tickers that have no bars at all, units never attempted, stale adjusted units, days
    inside the planned range no unit covers (`unplanned`), bars inside no known listing
    of their symbol (reported; they do not make it incomplete). A handful of queries,
    each one pass or an index lookup: ~1 s on 1,000,000 units (a pass more where the
    ledger records a plan's range)."""
    report = AuditReport(datasets=[])
    years = queries.units_by_year(ledger)  # one pass: per dataset and year
    counted: dict[str, DatasetAudit] = {}
    for row in years:
        entry = counted.setdefault(row.dataset, DatasetAudit(row.dataset, 0, 0, dict.fromkeys(STATES, 0)))
        entry.units += row.units
        entry.rows += row.rows
        entry.never_attempted += row.untried
        for state in STATES:
            entry.by_state[state] += getattr(row, state)
        if _ranged(row.dataset):
            settled = row.done + row.empty_confirmed
            entry.by_year.append(YearCoverage(row.year, row.units, settled, row.failed))
    stale = queries.stale_adjusted(ledger)
    unattributed = queries.unattributed_bars(ledger)
    report.listings = listing_summary(ledger)
    unplanned = unplanned_days(ledger)
    for name, entry in counted.items():
        entry.unattributed = [
            UnattributedBars(r.ticker, str(r.first_day), str(r.last_day), int(r.bars), int(r.units))
            for r in unattributed
            if r.dataset == name
        ]
        entry.failures = _failures(ledger, name)
        # most tickers never split: no rows is the usual answer; a date-keyed unit has no ticker
        if _ranged(name, keyed_by="ticker"):
            entry.tickers, entry.tickers_without_data = _tickers_without_data(ledger, name)
        mine = [r for r in stale if r.dataset == name]
        entry.stale_adjusted = len(mine)
        entry.stale_examples = [
            f"{r.ticker} {r.period}: split on {r.execution_date}" for r in mine[:EXAMPLES_PER_CLASS]
        ]
        _stale_flatfiles(ledger, entry)
        entry.unplanned = unplanned.get(name, [])
        report.datasets.append(entry)
    return report


def unplanned_days(ledger: Ledger) -> dict[str, list[UnplannedDays]]:
    """Per dataset, the trading days inside the symbol's listing windows that the ledger's
    own records say were planned and no unit covers:

    - the holes between a ticker's units inside the range the ledger records as planned
      for it (`planned`; a dataset it has no row of, planned before the table or through
      the API, is not judged). A plan of January then one of March (or of March, then
      January) records January to March: February is such a hole. The record's range
      ends at the latest `--to` ever given, not the last (which `sync` plans through): a
      narrower plan since leaves the units on both sides of a hole, and the hole with them;
    - the days a plan asked of a clipped unit it could not widen while a run held it
      (`unwidened`): the run settled the range it was given, and the rest of what the plan
      asked is in no unit until a later plan widens it.

    One pass over the units (`queries.unit_gaps`) and a look at the small `unwidened`
    table; usually no row."""
    planned: dict[str, list[coverage.Window]] = {}
    last = coverage.last_plannable_day()
    for plan in ledger.remembered_plans(forgotten=True):  # `sync --forget` stops a sync, not audit
        if plan.first_day is not None and _ranged(plan.dataset):
            planned.setdefault(plan.dataset, []).append((plan.first_day, plan.widest_day or last))
    # each dataset's planned ranges as one set of days (two universes' ranges may overlap)
    ranges = {name: coverage.union(spans) for name, spans in planned.items()}
    uncovered: dict[tuple[str, str], list[coverage.Window]] = {}
    for row in queries.unit_gaps(ledger, sorted(ranges)):
        after = stored_date(row.previous_end) + coverage.DAY
        before = stored_date(row.period_start) - coverage.DAY
        inside = [(max(after, a), min(before, b)) for a, b in ranges[row.dataset]]  # type: ignore[type-var]
        uncovered.setdefault((row.dataset, row.ticker), []).extend((a, b) for a, b in inside if a <= b)
    for row in queries.unwidened_units(ledger):
        asked = (stored_date(row.first_day), min(stored_date(row.last_day), last))
        held = (stored_date(row.period_start), stored_date(row.period_end))
        spans = [(asked[0], held[0] - coverage.DAY), (held[1] + coverage.DAY, asked[1])]
        uncovered.setdefault((row.dataset, row.ticker), []).extend((a, b) for a, b in spans if a <= b)
    spans_of = {key: coverage.union(spans) for key, spans in uncovered.items() if spans}
    if not spans_of:
        return {}
    windows: dict[str, list[coverage.Window]] = {}
    for listing in ledger.listings(tickers=sorted({ticker for _, ticker in spans_of})):
        windows.setdefault(listing.ticker, []).append((listing.first_day, listing.last_day))
    low = min(first for spans in spans_of.values() for first, _ in spans)
    calendar = coverage.TradingCalendar(low, max(end for spans in spans_of.values() for _, end in spans))
    found: dict[str, list[UnplannedDays]] = {}
    for (dataset, ticker), spans in sorted(spans_of.items()):
        for hole in coverage.holes(ticker, spans, windows.get(ticker), calendar):
            found.setdefault(dataset, []).append(
                UnplannedDays(hole.ticker, str(hole.first_day), str(hole.last_day), hole.trading_days)
            )
    return found


def _stale_flatfiles(ledger: Ledger, entry: DatasetAudit) -> None:
    """Ticker units built from a day file replaced since, and the replaced day files."""
    from polyledger.datasets.flat_days import ROUTES

    if entry.dataset in ROUTES:
        rows = ledger.stale_flat(entry.dataset, ROUTES[entry.dataset])
        examples = [f"{r.ticker} {r.period}: a day file changed since it was read" for r in rows]
    elif entry.dataset in ROUTES.values():
        rows = ledger.changed_days(entry.dataset)
        examples = [f"{str(r.period_start)[:10]}: the object's ETag changed" for r in rows]
    else:
        return
    entry.stale_flatfiles = len(rows)
    entry.stale_examples += examples[:EXAMPLES_PER_CLASS]


def listing_summary(ledger: Ledger) -> ListingSummary:
    """Counts, reused symbols (several listings) and securities with several symbols."""
    listings = ledger.listings()
    summary = ListingSummary(
        listings=len(listings),
        symbols=len({item.ticker for item in listings}),
        securities=len({item.security_id for item in listings}),
    )
    by_ticker: dict[str, list] = {}
    by_security: dict[str, list] = {}
    for item in listings:
        by_ticker.setdefault(item.ticker, []).append(item)
        by_security.setdefault(item.security_id or "", []).append(item)
    for ticker, items in by_ticker.items():
        if len(items) > 1:
            summary.reused.append((ticker, "; ".join(f"{i.window_text()} {i.security_id}" for i in items)))
    for security_id, items in by_security.items():
        if len({i.ticker for i in items}) > 1:
            ordered = sorted(items, key=lambda i: i.first_day or dt.date.min)
            summary.renamed.append(
                (security_id, " -> ".join(f"{i.ticker} ({i.window_text()})" for i in ordered))
            )
    return summary


def _ranged(name: str, keyed_by: str | None = None) -> bool:
    """Is the dataset planned over a date range (and keyed as asked)? A name the registry
    does not know (a hand-edited ledger) is audited as range bars keyed by ticker."""
    try:
        spec = datasets.get(name)
    except InputError:
        return True
    return spec.needs_range and keyed_by in (None, spec.keyed_by)


def _failures(ledger: Ledger, dataset: str) -> list[FailureClass]:
    rows = queries.failed_units(ledger, dataset)
    classes: dict[str, FailureClass] = {}
    for row in rows:
        entry = classes.setdefault(row.error_class, FailureClass(row.error_class, 0, []))
        entry.units += 1
        if len(entry.examples) < EXAMPLES_PER_CLASS:
            entry.examples.append(f"{row.ticker} {row.period}: {row.last_error}")
    return sorted(classes.values(), key=lambda f: -f.units)


def _tickers_without_data(ledger: Ledger, dataset: str) -> tuple[int, list[str]]:
    """Tickers with no bar in any unit, at least one unit confirmed empty (a wrong or dead
    symbol; some units may still be failed or pending)."""
    rows = queries.ticker_outcomes(ledger, dataset)
    return len(rows), [row.ticker for row in rows if row.done == 0 and row.empty > 0]

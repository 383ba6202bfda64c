"""Completeness, as ledger queries: what is done, what is missing, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from polyledger.ledger import Ledger
from polyledger.periods import REFERENCE_DATASETS

STATES = ("pending", "running", "done", "empty_confirmed", "failed")

# Adjusted bar units whose prices predate a split that took effect after they were fetched:
# the API has since rebased those prices, so they no longer join newer units. (Split
# dates are ET session dates; fetched_at is UTC: a fetch on the execution date counts as
# after it.) Raw (--unadjusted) units never go stale.
STALE_ADJUSTED = (
    # CROSS JOIN keeps SQLite's join order: the few splits first, then each one's units by index
    # (PostgreSQL plans it as the inner join it is). Portable: no ON after CROSS JOIN, and
    # `adjusted` is a boolean there (u.adjusted = 1 would not compare)
    "SELECT u.id, u.dataset, u.ticker, u.period, max(s.execution_date) AS execution_date "
    "FROM splits s CROSS JOIN units u "
    "WHERE u.dataset IN ('minute', 'day') AND u.ticker = s.ticker AND u.state = 'done' AND u.adjusted "
    "AND u.period_start < s.execution_date AND substr(u.fetched_at, 1, 10) < s.execution_date "
    "GROUP BY u.id"
)
EXAMPLES_PER_CLASS = 3
EXIT_WORK_LEFT = 3  # audit's exit code when only pending or running units keep it incomplete


# no attempt counted, none charged a request, no error or fetch left behind (a unit queued
# again by retry or repair has a fresh budget but keeps those)
NEVER_ATTEMPTED = (
    "attempts = 0 AND requests = 0 AND fetched_at IS NULL AND last_error IS NULL AND error_class IS NULL"
)


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
class DatasetAudit:
    dataset: str
    units: int
    rows: int
    by_state: dict[str, int]
    failures: list[FailureClass] = field(default_factory=list)
    tickers: int = 0
    tickers_without_data: list[str] = field(default_factory=list)
    never_attempted: int = 0
    stale_adjusted: int = 0  # adjusted units fetched before a later split of their ticker
    stale_examples: list[str] = field(default_factory=list)
    by_year: list[YearCoverage] = field(default_factory=list)  # bar datasets only

    @property
    def complete(self) -> bool:
        return (
            self.by_state["done"] + self.by_state["empty_confirmed"] == self.units and not self.stale_adjusted
        )

    @property
    def needs_attention(self) -> bool:
        """Failed or stale units: running again will not fix them by itself."""
        return bool(self.by_state["failed"] or self.stale_adjusted)


@dataclass
class AuditReport:
    datasets: list[DatasetAudit]

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
        }


def status_counts(ledger: Ledger) -> list[dict]:
    """Units and rows per dataset and state."""
    rows = ledger.query(
        "SELECT dataset, state, count(*) AS units, coalesce(sum(rows), 0) AS rows "
        "FROM units GROUP BY dataset, state ORDER BY dataset, state"
    )
    return [dict(row._mapping) for row in rows]


def audit(ledger: Ledger) -> AuditReport:
    """Per dataset: units by state, rows, failures grouped by class with examples,
    tickers that have no bars at all, units never attempted, stale adjusted units.
    A handful of queries, each one pass or an index lookup: ~1 s on 1,000,000 units."""
    report = AuditReport(datasets=[])
    # one pass: per dataset and year (the first four characters of every period)
    years = ledger.query(
        # rows of done units only: a unit queued again keeps its old count until refetched
        "SELECT dataset, substr(period, 1, 4) AS year, count(*) AS units, "
        "coalesce(sum(CASE WHEN state = 'done' THEN rows END), 0) AS rows, "
        # never tried: a unit queued again (retry, repair) has a fresh budget, but keeps its
        # last error or fetch time, so it does not count as new
        f"count(*) FILTER (WHERE {NEVER_ATTEMPTED}) AS untried, "
        + ", ".join(f"count(*) FILTER (WHERE state = '{state}') AS {state}" for state in STATES)
        + " FROM units GROUP BY dataset, substr(period, 1, 4) ORDER BY dataset, year"
    )
    counted: dict[str, DatasetAudit] = {}
    for row in years:
        entry = counted.setdefault(row.dataset, DatasetAudit(row.dataset, 0, 0, dict.fromkeys(STATES, 0)))
        entry.units += row.units
        entry.rows += row.rows
        entry.never_attempted += row.untried
        for state in STATES:
            entry.by_state[state] += getattr(row, state)
        if row.dataset not in REFERENCE_DATASETS:
            settled = row.done + row.empty_confirmed
            entry.by_year.append(YearCoverage(row.year, row.units, settled, row.failed))
    stale = ledger.query(
        f"SELECT dataset, ticker, period, execution_date FROM ({STALE_ADJUSTED}) AS stale ORDER BY 1, 2, 3"
    )
    for name, entry in counted.items():
        entry.failures = _failures(ledger, name)
        if name not in REFERENCE_DATASETS:  # most tickers never split: no rows is the usual answer
            entry.tickers, entry.tickers_without_data = _tickers_without_data(ledger, name)
        mine = [r for r in stale if r.dataset == name]
        entry.stale_adjusted = len(mine)
        entry.stale_examples = [
            f"{r.ticker} {r.period}: split on {r.execution_date}" for r in mine[:EXAMPLES_PER_CLASS]
        ]
        report.datasets.append(entry)
    return report


def _failures(ledger: Ledger, dataset: str) -> list[FailureClass]:
    rows = ledger.query(
        "SELECT coalesce(error_class, 'unknown') AS error_class, ticker, period, last_error "
        "FROM units WHERE dataset = :d AND state = 'failed' ORDER BY error_class, ticker, period_start",
        {"d": dataset},
    )
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
    rows = ledger.query(
        "SELECT ticker, sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done, "
        "sum(CASE WHEN state = 'empty_confirmed' THEN 1 ELSE 0 END) AS empty "
        "FROM units WHERE dataset = :d GROUP BY ticker ORDER BY ticker",
        {"d": dataset},
    )
    return len(rows), [row.ticker for row in rows if row.done == 0 and row.empty > 0]

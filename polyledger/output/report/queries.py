"""The report's numbers, read from the ledger with queries that aggregate in SQL (a
1,000,000-unit ledger is a few scans), never from the data folder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from polyledger import datasets
from polyledger.checks.audit import STATES, UnplannedDays, unplanned_days
from polyledger.ledger import SETTLED, Ledger, UnitState, queries
from polyledger.periods import stored_date, unit_periods

MAX_TICKERS = 60  # more than this: coverage per year x month for the whole universe
FLAGS_SHOWN = 20
BAR_DATASETS = datasets.names(bars=True)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class DatasetSummary:
    dataset: str
    units: int = 0
    rows: int = 0
    tickers: int = 0
    by_state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    stale_adjusted: int = 0
    unplanned: int = 0  # trading days inside the planned range in no unit (`audit`'s `unplanned`)
    holes: list[UnplannedDays] = field(default_factory=list)  # those days, as audit finds them

    @property
    def settled(self) -> int:
        return sum(self.by_state[state] for state in SETTLED)

    @property
    def complete(self) -> bool:  # as `audit`: every unit settled, nothing stale, no day never planned
        return self.settled == self.units and not self.stale_adjusted and not self.unplanned


class Cell(NamedTuple):
    units: int
    settled: int  # done or empty_confirmed
    failed: int
    empty: int  # empty_confirmed: settled, but the API has no bars there

    @property
    def no_bars_at_all(self) -> bool:
        """Nothing left to fetch, and no settled unit has a bar: a ticker with no data looks
        settled, which is true, but is not the same as covered. (Partly fetched cells keep
        their share colour.)"""
        finished = self.settled + self.failed == self.units
        return finished and self.settled > 0 and self.empty == self.settled


@dataclass
class Grid:
    """A coverage heatmap: rows x columns of cells."""

    title: str
    row_labels: list[str]
    column_labels: list[str]
    cells: dict[tuple[str, str], Cell]  # (row, column) -> counts of its units
    note: str = ""  # said on the page when the view had to change


def period_states(ledger: Ledger) -> list[Any]:
    """Units and bars per (dataset, period, state): one scan of the ledger giving a few hundred
    rows (periods are months or years), from which the per-dataset totals, the whole-universe
    coverage and the bars over time are all drawn."""
    return queries.units_by_period(ledger)


def dataset_summaries(ledger: Ledger, counts: list[Any]) -> list[DatasetSummary]:
    summaries: dict[str, DatasetSummary] = {}
    for row in counts:
        entry = summaries.setdefault(row.dataset, DatasetSummary(row.dataset))
        entry.units += row.units
        entry.rows += row.rows
        entry.by_state[row.state] = entry.by_state.get(row.state, 0) + row.units
    for dataset, tickers in queries.tickers_per_dataset(ledger).items():
        summaries[dataset].tickers = tickers
    for dataset, stale in queries.stale_per_dataset(ledger).items():
        summaries[dataset].stale_adjusted = stale
    for dataset, holes in unplanned_days(ledger).items():
        summaries[dataset].unplanned = sum(hole.trading_days for hole in holes)
        summaries[dataset].holes = holes
    rank = {name: i for i, name in enumerate(datasets.names())}
    return sorted(summaries.values(), key=lambda s: (rank.get(s.dataset, len(rank)), s.dataset))


def coverage_grids(ledger: Ledger, summaries: list[DatasetSummary], counts: list[Any]) -> list[Grid]:
    """Minute: tickers x years (cell = share of the ticker-year's months settled), or years x
    months for the whole universe when there are too many tickers. Day: tickers x years, or
    one row of years. Grouped daily (keyed by date): years x months, the share of each
    month's trading days settled. A month (a year, for yearly units) audit finds in no unit
    between two plans counts as an unsettled unit of its cell (`_with_holes`)."""
    grids = []
    for summary in summaries:
        name = summary.dataset
        if name not in BAR_DATASETS:
            continue
        grain = datasets.get(name).grain
        if grain == "date":
            own = [row for row in counts if row.dataset == name]
            cells = _cells((r.period[:4], MONTHS[int(r.period[5:7]) - 1], r.state, r.units) for r in own)
            cells = _with_holes(cells, summary.holes, lambda _, d: (str(d.year), MONTHS[d.month - 1]), grain)
            title = f"{name} bars: share of each month's trading days settled (every symbol)"
            if cells:
                grids.append(Grid(title, _year_range(r for r, _ in cells), list(MONTHS), cells, ""))
            continue
        too_many = (
            f"{summary.tickers:,} tickers are too many to show one by one (more than {MAX_TICKERS}): "
            f"{name} coverage is shown per {'year and month' if grain == 'month' else 'year'} "
            "for the whole universe."
        )
        if summary.tickers <= MAX_TICKERS:
            rows = queries.ticker_year_states(ledger, name)
            cells = _cells((row.ticker, row.year, row.state, row.units) for row in rows)
            cells = _with_holes(cells, summary.holes, lambda ticker, d: (ticker, str(d.year)), grain)
            row_labels, columns = sorted({r for r, _ in cells}), _year_range(c for _, c in cells)
            if grain == "month":
                title, note = f"{name} bars: share of each ticker-year's months settled", ""
            else:
                title, note = "day bars: ticker-years settled (one unit each)", ""
        elif grain == "month":
            own = [row for row in counts if row.dataset == name and len(row.period) == 7]
            cells = _cells((r.period[:4], MONTHS[int(r.period[5:7]) - 1], r.state, r.units) for r in own)
            cells = _with_holes(cells, summary.holes, lambda _, d: (str(d.year), MONTHS[d.month - 1]), grain)
            row_labels, columns = _year_range(r for r, _ in cells), list(MONTHS)
            title = f"{name} bars: share of all {summary.tickers:,} tickers' units settled, per month"
            note = too_many
        else:
            own = [row for row in counts if row.dataset == name]
            cells = _cells(("all tickers", r.period[:4], r.state, r.units) for r in own)
            cells = _with_holes(cells, summary.holes, lambda _, d: ("all tickers", str(d.year)), grain)
            row_labels, columns = ["all tickers"], _year_range(c for _, c in cells)
            title = f"day bars: share of all {summary.tickers:,} tickers' years settled"
            note = too_many
        if cells:
            grids.append(Grid(title, row_labels, columns, cells, note))
    return grids


def _with_holes(
    cells: dict[tuple[str, str], Cell],
    holes: Iterable[UnplannedDays],
    key: Callable[[str, dt.date], tuple[str, str]],
    grain: str,
) -> dict[tuple[str, str], Cell]:
    """The cells with each period (a month; a year for yearly units) that audit's
    unplanned days touch counted as one unit more, not settled (`key` names its cell): a
    year whose months between two plans are in no unit is never painted settled (a
    cell's share is of its units, and those months have none)."""
    touched: set[tuple[str, tuple[str, str], str]] = set()
    for hole in holes:
        for day, _ in unit_periods("month", stored_date(hole.first_day), stored_date(hole.last_day)):
            period = day.isoformat()[:4] if grain == "year" else day.isoformat()[:7]
            touched.add((hole.ticker, key(hole.ticker, day), period))
    for _, where, _ in sorted(touched):
        cell = cells.get(where, Cell(0, 0, 0, 0))
        cells[where] = cell._replace(units=cell.units + 1)
    return cells


def _cells(counts: Iterable[tuple[str, str, str, int]]) -> dict[tuple[str, str], Cell]:
    """(row, column, state, units) -> {(row, column): Cell}"""
    cells: dict[tuple[str, str], Cell] = {}
    for row, column, state, units in counts:
        cell = cells.get((row, column), Cell(0, 0, 0, 0))
        cells[row, column] = Cell(
            cell.units + units,
            cell.settled + (units if state in SETTLED else 0),
            cell.failed + (units if state == UnitState.FAILED else 0),
            cell.empty + (units if state == UnitState.EMPTY_CONFIRMED else 0),
        )
    return cells


def _year_range(years: Iterable[str]) -> list[str]:
    values = sorted({int(year) for year in years})
    return [str(year) for year in range(values[0], values[-1] + 1)] if values else []


def bars_over_time(counts: list[Any]) -> dict[str, list[tuple[str, int]]]:
    """Bars stored per calendar month (minute, grouped daily) and per year (day), across all
    tickers."""
    result: dict[str, dict[str, int]] = {}
    for row in sorted(counts, key=lambda row: row.period):
        if row.dataset in BAR_DATASETS and row.state == UnitState.DONE:
            bucket = row.period[:7] if datasets.get(row.dataset).grain == "date" else row.period
            points = result.setdefault(row.dataset, {})
            points[bucket] = points.get(bucket, 0) + int(row.rows)
    return {name: list(result[name].items()) for name in BAR_DATASETS if name in result}


def failure_classes(ledger: Ledger) -> list[Any]:
    """(dataset, error_class, units, example unit and its error), largest first."""
    return queries.failure_examples(ledger)


def quality(ledger: Ledger) -> tuple[list[Any], list[Any]]:
    """(flags per check, the first flags); empty when no quality check ran."""
    return queries.quality_flag_counts(ledger), queries.first_quality_flags(ledger, FLAGS_SHOWN)

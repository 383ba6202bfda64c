"""One self-contained HTML page about a ledger: completeness, coverage, volume, failures, quality.

Everything comes from ledger queries that aggregate in SQL (a 1,000,000-unit ledger is a few
scans), never from the data folder. The page has no external references: CSS is inline and
the charts are PNGs embedded as data URIs. The coverage heatmap is also written beside the
page as `<stem>-coverage.png`. matplotlib is imported inside functions (Agg canvas, no
display), so importing this module, and `polyledger --help`, stays fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from polyledger import datasets
from polyledger.checks.audit import STATES
from polyledger.ledger import SETTLED, Ledger, UnitState, queries

MAX_TICKERS = 60  # more than this: coverage per year x month for the whole universe
FLAGS_SHOWN = 20
BAR_DATASETS = datasets.names(bars=True)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
STATE_COLORS = {
    UnitState.DONE: "#2e7d32",
    UnitState.EMPTY_CONFIRMED: "#9ccc65",
    UnitState.FAILED: "#d62728",
    UnitState.RUNNING: "#1e88e5",
    UnitState.PENDING: "#bdbdbd",
}
FAILED_COLOR = "#d62728"
OPEN_COLOR = "#c8c8c8"  # a cell with nothing settled and nothing failed: not fetched yet
EMPTY_COLOR = "#37474f"  # dots over a cell whose settled units all came back without bars...
EMPTY_FILL = "#b3e5fc"  # ...on pale blue, so "nothing there" never reads as "covered" (green)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    coverage_png: Path


@dataclass
class DatasetSummary:
    dataset: str
    units: int = 0
    rows: int = 0
    tickers: int = 0
    by_state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    stale_adjusted: int = 0

    @property
    def settled(self) -> int:
        return sum(self.by_state[state] for state in SETTLED)

    @property
    def complete(self) -> bool:  # as `audit`: every unit settled and nothing stale
        return self.settled == self.units and not self.stale_adjusted


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


# --- reading the ledger ---------------------------------------------------------------


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
    rank = {name: i for i, name in enumerate(datasets.names())}
    return sorted(summaries.values(), key=lambda s: (rank.get(s.dataset, len(rank)), s.dataset))


def coverage_grids(ledger: Ledger, summaries: list[DatasetSummary], counts: list[Any]) -> list[Grid]:
    """Minute: tickers x years (cell = share of the ticker-year's months settled), or years x
    months for the whole universe when there are too many tickers. Day: tickers x years, or
    one row of years. Grouped daily (keyed by date): years x months, the share of each
    month's trading days settled."""
    grids = []
    for summary in summaries:
        name = summary.dataset
        if name not in BAR_DATASETS:
            continue
        grain = datasets.get(name).grain
        if grain == "date":
            own = [row for row in counts if row.dataset == name]
            cells = _cells((r.period[:4], MONTHS[int(r.period[5:7]) - 1], r.state, r.units) for r in own)
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
            row_labels, columns = sorted({r for r, _ in cells}), _year_range(c for _, c in cells)
            if grain == "month":
                title, note = f"{name} bars: share of each ticker-year's months settled", ""
            else:
                title, note = "day bars: ticker-years settled (one unit each)", ""
        elif grain == "month":
            own = [row for row in counts if row.dataset == name and len(row.period) == 7]
            cells = _cells((r.period[:4], MONTHS[int(r.period[5:7]) - 1], r.state, r.units) for r in own)
            row_labels, columns = _year_range(r for r, _ in cells), list(MONTHS)
            title = f"{name} bars: share of all {summary.tickers:,} tickers' units settled, per month"
            note = too_many
        else:
            own = [row for row in counts if row.dataset == name]
            cells = _cells(("all tickers", r.period[:4], r.state, r.units) for r in own)
            row_labels, columns = ["all tickers"], _year_range(c for _, c in cells)
            title = f"day bars: share of all {summary.tickers:,} tickers' years settled"
            note = too_many
        if cells:
            grids.append(Grid(title, row_labels, columns, cells, note))
    return grids


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


# --- charts ---------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # Agg, explicitly: no display needed
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="white")
    return buffer.getvalue()


def coverage_png(grids: list[Grid]) -> bytes:
    import matplotlib
    import numpy as np
    from matplotlib.patches import Patch, Rectangle

    if not grids:
        figure = _figure(6, 1.6)
        figure.text(0.5, 0.5, "no minute or day units planned", ha="center", va="center", fontsize=13)
        return _png(figure)
    width = max(7.0, 3.2 + 0.42 * max(len(g.column_labels) for g in grids))
    heights = [1.0 + 0.22 * len(g.row_labels) for g in grids]
    figure = _figure(width, sum(heights) + 1.1)
    axes = figure.subplots(len(grids), 1, squeeze=False, height_ratios=heights)[:, 0]
    # YlGn without its palest end, so "nothing settled" never looks like "nothing planned" (white)
    greens = matplotlib.colormaps["YlGn"](np.linspace(0.15, 1.0, 256))
    colormap = matplotlib.colors.ListedColormap(greens).with_extremes(bad="white")
    image = None
    for ax, grid in zip(axes, grids, strict=True):
        shape = (len(grid.row_labels), len(grid.column_labels))
        share = np.full(shape, np.nan)
        untouched = np.zeros(shape, dtype=bool)
        row_of = {label: i for i, label in enumerate(grid.row_labels)}
        column_of = {label: i for i, label in enumerate(grid.column_labels)}
        for (row, column), cell in grid.cells.items():
            r, c = row_of[row], column_of[column]
            share[r, c] = cell.settled / cell.units
            untouched[r, c] = cell.settled == 0 and cell.failed == 0
            if cell.no_bars_at_all:
                dots = Rectangle(
                    (c - 0.5, r - 0.5),
                    1,
                    1,
                    facecolor=EMPTY_FILL,
                    hatch="..",
                    edgecolor=EMPTY_COLOR,
                    linewidth=0,
                )
                ax.add_patch(dots)
            if cell.failed:
                hatch = Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="////", edgecolor=FAILED_COLOR)
                ax.add_patch(hatch)  # over the dots: failures always show
        share[untouched] = np.nan
        image = ax.imshow(share, cmap=colormap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        grey = np.where(untouched, 1.0, np.nan)
        ax.imshow(
            grey, cmap=matplotlib.colors.ListedColormap([OPEN_COLOR]), aspect="auto", interpolation="nearest"
        )
        ax.set_title(grid.title, fontsize=11, loc="left")
        size = 9 if shape[0] <= 30 else 7
        ax.set_yticks(range(shape[0]), grid.row_labels, fontsize=size)
        ax.set_xticks(range(shape[1]), grid.column_labels, fontsize=8, rotation=90 if shape[1] > 16 else 0)
        ax.set_xticks(np.arange(-0.5, shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, shape[0]), minor=True)
        ax.grid(which="minor", color="#e0e0e0", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        if shape[0] > 25:
            ax.tick_params(top=True, labeltop=True)
        for spine in ax.spines.values():
            spine.set_visible(False)
    figure.colorbar(image, ax=list(axes), label="share settled (done or empty)", shrink=0.8, pad=0.02)
    legend = [
        Patch(facecolor="white", edgecolor=FAILED_COLOR, hatch="////", label="has failed units"),
        Patch(facecolor=EMPTY_FILL, edgecolor=EMPTY_COLOR, hatch="..", label="settled, but no bars at all"),
        Patch(facecolor=OPEN_COLOR, label="not fetched yet (pending)"),
        Patch(facecolor="white", edgecolor="#bdbdbd", label="nothing planned"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return _png(figure)


def bars_png(series: dict[str, list[tuple[str, int]]]) -> bytes:
    from matplotlib.ticker import EngFormatter, MaxNLocator

    figure = _figure(10, 2.6 * len(series) + 0.3)
    axes = figure.subplots(len(series), 1, squeeze=False)[:, 0]
    for ax, (dataset, points) in zip(axes, series.items(), strict=True):
        if len(points[0][0]) == 7:  # per calendar month ("2024-03")
            x = [dt.date(int(p[:4]), int(p[5:7]), 1) for p, _ in points]
            ax.bar(x, [bars for _, bars in points], width=25, align="edge", color="#2e7d32")
            ax.set_title(f"{dataset} bars stored per calendar month (all tickers)", fontsize=11, loc="left")
        else:
            ax.bar([int(p[:4]) for p, _ in points], [bars for _, bars in points], width=0.8, color="#1565c0")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title("daily bars stored per year (all tickers)", fontsize=11, loc="left")
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(axis="y", color="#e0e0e0")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return _png(figure)


def failures_png(classes: list[Any]) -> bytes:
    totals: dict[str, int] = {}
    for row in classes:
        totals[row.error_class] = totals.get(row.error_class, 0) + row.units
    names = sorted(totals, key=lambda name: totals[name])
    figure = _figure(6.5, 0.9 + 0.35 * len(names))
    ax = figure.subplots()
    ax.barh(names, [totals[name] for name in names], height=0.6, color=FAILED_COLOR)
    for y, name in enumerate(names):
        ax.annotate(f" {totals[name]:,}", (totals[name], y), va="center", fontsize=9)
    ax.set_xlabel("failed units")
    ax.margins(x=0.15)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(figure)


# --- the page -------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(headers: list[str], rows: list[list[object]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _state_bar(summary: DatasetSummary) -> str:
    parts = []
    for state in STATE_COLORS:  # settled first, then failed, then open
        count = summary.by_state.get(state, 0)
        if count:
            share = 100 * count / summary.units
            parts.append(
                f'<span style="width:{share:.3f}%;background:{STATE_COLORS[state]}" '
                f'title="{_e(state)}: {count:,}"></span>'
            )
    return f'<div class="bar">{"".join(parts)}</div>'


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "-"
    share = 100 * part / whole
    return f"{share:.1f}%" if part == whole or share < 99.95 else "99.9%"


def write_report(ledger: Ledger, out: Path, *, title: str | None = None) -> ReportFiles:
    """Write the HTML report to `out` and its coverage heatmap to `<out stem>-coverage.png`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png_path = out.with_name(f"{out.stem}-coverage.png")
    counts = period_states(ledger)
    summaries = dataset_summaries(ledger, counts)
    grids = coverage_grids(ledger, summaries, counts)
    heatmap = coverage_png(grids)
    png_path.write_bytes(heatmap)
    title = title or f"polyledger report: {ledger.path.name if ledger.path else ledger.name}"
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flag_counts, first_flags = quality(ledger)
    flags = sum(row.flags for row in flag_counts)
    sections = [_header(ledger, summaries, generated, flags)]
    if summaries:
        notes = "".join(f'<p class="note">{_e(g.note)}</p>' for g in grids if g.note)
        legend = (
            "Each cell is the share of units settled (done, or confirmed empty); "
            "red hatching marks cells with failed units; dotted pale blue ones are settled but every "
            "settled unit came back without bars (the API has nothing there); grey ones have not been "
            "fetched yet."
        )
        body = f"<p>{legend}</p>{notes}{_img(heatmap, 'coverage heatmap')}" if grids else ""
        sections.append(_section("Coverage", body or "<p>No minute or day units are planned.</p>"))
        series = bars_over_time(counts)
        body = _img(bars_png(series), "bars stored over time") if series else "<p>No bars stored yet.</p>"
        sections.append(_section("Bars stored over time", body))
        sections.append(_failures_section(failure_classes(ledger)))
        sections.append(_quality_section(flag_counts, first_flags))
        sections.append(_stale_section(summaries))
    page = PAGE.format(title=_e(title), css=CSS, body="\n".join(s for s in sections if s))
    out.write_text(page, encoding="utf-8")
    return ReportFiles(html=out, coverage_png=png_path)


def _section(heading: str, body: str) -> str:
    return f"<section><h2>{_e(heading)}</h2>{body}</section>"


def _header(ledger: Ledger, summaries: list[DatasetSummary], generated: str, flags: int = 0) -> str:
    where = ledger.path.resolve() if ledger.path else ledger.name
    meta = (
        f'<p class="meta">ledger <code>{_e(where)}</code> &middot; '
        f"generated {_e(generated)} &middot; from the ledger alone: <code>polyledger audit --deep</code> "
        "compares the files with it</p>"
    )
    if not summaries:
        verdict = (
            '<p class="verdict empty">EMPTY: this ledger has no units yet. Plan some with '
            "<code>polyledger plan</code>.</p>"
        )
        return f"<header>{meta}{verdict}</header>"
    complete = all(s.complete for s in summaries)
    stale = sum(s.stale_adjusted for s in summaries)
    open_units = sum(s.units - s.settled for s in summaries)
    if complete and not flags:
        verdict = '<p class="verdict ok">COMPLETE: every unit is settled (done or confirmed empty).</p>'
    else:
        reasons = [f"{flags:,} quality flags (see below)"] if flags else []
        if open_units:
            reasons.append(f"{open_units:,} units not settled")
        if stale:
            reasons.append(f"{stale:,} stale adjusted units")
        word = "INCOMPLETE" if not complete else "SETTLED, BUT FLAGGED"
        verdict = f'<p class="verdict bad">{word}: {_e(", ".join(reasons))}.</p>'
    rows = [
        [
            f"<b>{_e(s.dataset)}</b>",
            f"{s.settled:,} / {s.units:,}",
            _percent(s.settled, s.units),
            _state_bar(s),
            f"{s.by_state['done']:,}",
            f"{s.by_state['empty_confirmed']:,}",
            f"{s.by_state['failed']:,}",
            f"{s.by_state['pending'] + s.by_state['running']:,}",
            f"{s.rows:,}",
            f"{s.tickers:,}",
        ]
        for s in summaries
    ]
    table = _table(
        [
            "dataset",
            "settled / planned",
            "",
            "units by state",
            "done",
            "empty",
            "failed",
            "open",
            "bars",
            "tickers",
        ],
        rows,
        numeric={1, 2, 4, 5, 6, 7, 8, 9},
    )
    key = "".join(
        f'<span><i style="background:{color}"></i>{_e(state)}</span>' for state, color in STATE_COLORS.items()
    )
    completeness = _section("Completeness", f'{table}<p class="key">{key}</p>')
    return f"<header>{meta}{verdict}</header>{completeness}"


def _failures_section(classes: list[Any]) -> str:
    if not classes:
        return _section("Failures", '<p class="good">No failed units.</p>')
    rows = [
        [
            _e(row.dataset),
            f"<code>{_e(row.error_class)}</code>",
            f"{row.units:,}",
            f"<b>{_e(row.ticker)} {_e(row.period)}</b>: {_e(row.last_error)}",
        ]
        for row in classes
    ]
    table = _table(["dataset", "class", "units", "example"], rows, numeric={2})
    hint = "<p>Queue them again with <code>polyledger retry --class CLASS</code> once the cause is fixed.</p>"
    return _section(
        "Failures",
        f'<div class="split">{table}{_img(failures_png(classes), "failed units per class")}</div>{hint}',
    )


def _quality_section(counts: list[Any], first: list[Any]) -> str:
    if not counts:
        return _section(
            "Quality flags", "<p>No quality flags: no quality check run yet (or it found nothing).</p>"
        )
    summary = _table(
        ["check", "flags", "tickers", "checked at"],
        [
            [f"<code>{_e(r.check_name)}</code>", f"{r.flags:,}", f"{r.tickers:,}", _e(r.checked)]
            for r in counts
        ],
        numeric={1, 2},
    )
    total = sum(r.flags for r in counts)
    detail = _table(
        ["check", "dataset", "ticker", "session", "detail", "value"],
        [
            [
                _e(r.check_name),
                _e(r.dataset),
                _e(r.ticker),
                _e(r.session_date),
                _e(r.detail),
                "" if r.value is None else f"{r.value:,.4g}",
            ]
            for r in first
        ],
        numeric={5},
    )
    shown = f"<p>The first {len(first)} of {total:,} flags:</p>" if total > len(first) else ""
    return _section("Quality flags", f"{summary}{shown}{detail}")


def _stale_section(summaries: list[DatasetSummary]) -> str:
    stale = [s for s in summaries if s.stale_adjusted]
    if not stale:
        return ""
    items = ", ".join(f"{s.stale_adjusted:,} {_e(s.dataset)}" for s in stale)
    return _section(
        "Stale adjusted units",
        f'<p class="warn">{items} adjusted units were fetched before a later split of their ticker: their '
        "prices no longer join newer units. Queue them again with <code>polyledger retry --stale</code>.</p>",
    )


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#212121;
background:#f5f6f8;margin:0;padding:24px}
main{max-width:1200px;margin:0 auto}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 12px;color:#37474f}
header,section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:16px 20px;
margin-bottom:16px}
.meta{color:#616161;margin:0 0 10px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f3f4;padding:1px 4px;
border-radius:3px;word-break:break-all}
.verdict{font-size:16px;font-weight:600;padding:8px 12px;border-radius:6px;margin:0}
.verdict.ok{background:#e8f5e9;color:#1b5e20}.verdict.bad{background:#ffebee;color:#b71c1c}
.verdict.empty{background:#eceff1;color:#37474f}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff1;vertical-align:top}
th{background:#fafafa;color:#546e7a;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:flex;width:220px;height:14px;border-radius:3px;overflow:hidden;background:#eee}
.bar span{display:block;height:100%}
.key span{margin-right:14px;color:#616161;font-size:12px}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
img{max-width:100%;height:auto;display:block}
.split{display:flex;gap:20px;align-items:flex-start;flex-wrap:wrap}.split table{flex:1 1 520px}
.split img{flex:0 1 420px;max-width:420px}
.note,.warn{background:#fff8e1;border-left:4px solid #ffb300;padding:6px 10px}
.good{color:#1b5e20}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""

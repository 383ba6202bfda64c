"""The report's charts as PNG bytes: coverage heatmaps, bars over time, failures. matplotlib
is imported inside functions (Agg canvas, no display), so importing this module stays fast."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from polyledger.ledger import UnitState
from polyledger.output.report.queries import Grid

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

"""One self-contained HTML page about a ledger: completeness, coverage, volume, failures, quality.

Everything comes from ledger queries that aggregate in SQL (`queries`), never from the data
folder. The page (`page`) has no external references: CSS is inline and the charts
(`charts`) are PNGs embedded as data URIs. The coverage heatmap is also written beside the
page as `<stem>-coverage.png`. matplotlib is imported inside functions (Agg canvas, no
display), so importing this package, and `polyledger --help`, stays fast.
"""

from polyledger.output.report.page import ReportFiles, write_report
from polyledger.output.report.queries import (
    MAX_TICKERS,
    Cell,
    DatasetSummary,
    Grid,
    coverage_grids,
    dataset_summaries,
    period_states,
)

__all__ = [
    "MAX_TICKERS",
    "Cell",
    "DatasetSummary",
    "Grid",
    "ReportFiles",
    "coverage_grids",
    "dataset_summaries",
    "period_states",
    "write_report",
]

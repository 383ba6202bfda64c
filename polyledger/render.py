"""Rendering ledger reports for people (rich tables; plain text when not a terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from polyledger.audit import AuditReport


def print_audit(console: Console, report: AuditReport) -> None:
    """The audit as tables and short lines, ASCII-safe."""
    if not report.datasets:
        console.print("the ledger has no units: run `polyledger plan` first")
        return
    for entry in report.datasets:
        verdict = "COMPLETE" if entry.complete else "INCOMPLETE"
        table = Table(title=f"{entry.dataset}: {verdict} - {entry.units:,} units, {entry.rows:,} bars")
        table.add_column("state")
        table.add_column("units", justify="right")
        for state, count in entry.by_state.items():
            table.add_row(state, f"{count:,}")
        console.print(table)
        for failure in entry.failures:
            console.print(f"  failed [{failure.error_class}]: {failure.units} units, e.g.", markup=False)
            for example in failure.examples:
                console.print(f"    {example}", markup=False)
        if entry.tickers_without_data:
            names = ", ".join(entry.tickers_without_data[:20])
            more = len(entry.tickers_without_data) - 20
            console.print(
                f"  tickers with no data at all ({len(entry.tickers_without_data)} of {entry.tickers}): "
                f"{names}{f' and {more} more' if more > 0 else ''}",
                markup=False,
            )
        if entry.never_attempted:
            console.print(f"  never attempted: {entry.never_attempted:,} units", markup=False)

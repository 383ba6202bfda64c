"""Rendering ledger reports for people (rich tables; plain text when not a terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from polyledger import datasets
from polyledger.checks.audit import EXAMPLES_PER_CLASS as EXAMPLES
from polyledger.checks.audit import AuditReport, UnplannedDays
from polyledger.checks.files import Finding
from polyledger.datasets import MARKET
from polyledger.errors import counted, some_of


def print_audit(console: Console, report: AuditReport) -> None:
    """The audit as tables and short lines, ASCII-safe."""
    if not report.datasets:
        console.print("the ledger has no units: run `polyledger plan` first")
        return
    for entry in report.datasets:
        verdict = "COMPLETE" if entry.complete else "INCOMPLETE"
        noun = "rows" if entry.dataset in datasets.names(bars=False) else "bars"  # splits are no bars
        title = f"{entry.dataset}: {verdict} - {counted(entry.units, 'unit')}, {entry.rows:,} {noun}"
        table = Table(title=title)
        table.add_column("state")
        table.add_column("units", justify="right")
        for state, count in entry.by_state.items():
            table.add_row(state, f"{count:,}")
        console.print(table)
        if len(entry.by_year) > 1:
            console.print(
                "  by year (settled/planned, failed): "
                + ", ".join(
                    f"{y.year} {y.settled}/{y.units}{f' ({y.failed} failed)' if y.failed else ''}"
                    for y in entry.by_year
                ),
                markup=False,
                soft_wrap=True,  # one line, also when piped
            )
        for failure in entry.failures:
            failed = counted(failure.units, "unit")
            console.print(f"  failed [{failure.error_class}]: {failed}, e.g.", markup=False)
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
            console.print(
                f"  never attempted: {counted(entry.never_attempted, 'unit')}",
                markup=False,
            )
        if entry.stale_adjusted:
            console.print(
                f"  stale adjusted: {counted(entry.stale_adjusted, 'unit')} fetched before a later split "
                "(`polyledger retry --stale` queues them again)",
                markup=False,
            )
            for example in entry.stale_examples:
                console.print(f"    {example}", markup=False)
        if entry.stale_flatfiles:
            console.print(
                f"  stale flat files: {counted(entry.stale_flatfiles, 'unit')} read from a day file "
                "replaced since (`polyledger retry --stale` queues them again)",
                markup=False,
            )
            for example in entry.stale_examples:
                console.print(f"    {example}", markup=False)
        if entry.unplanned:
            days = counted(sum(item.trading_days for item in entry.unplanned), "trading day")
            tickers = counted(len({item.ticker for item in entry.unplanned}), "ticker")
            console.print(
                f"  unplanned: {days} of {tickers} inside the planned range are in "
                "no unit (`polyledger plan` over them, or `polyledger sync`, plans them), e.g.",
                markup=False,
            )
            for item in entry.unplanned[:EXAMPLES]:
                console.print(f"    {_hole(item)}: {item.trading_days:,} trading days", markup=False)
        for item in entry.unattributed[:20]:
            console.print(
                f"  unattributed: {item.ticker} {item.first_day}..{item.last_day}: {item.bars:,} bars "
                "inside no known listing of the symbol (kept with a null security_id)",
                markup=False,
            )
    _print_listings(console, report)


def _hole(item: UnplannedDays) -> str:
    days = f"{item.first_day}..{item.last_day}"
    return days if item.ticker == MARKET else f"{item.ticker} {days}"


def _print_listings(console: Console, report: AuditReport) -> None:
    """Symbols that changed hands and companies that changed symbols: where a ticker is
    not one security."""
    listings = report.listings
    if listings is None or not (listings.reused or listings.renamed):
        return
    console.print(
        f"listings: {listings.listings:,} listings of {listings.symbols:,} symbols, "
        f"{listings.securities:,} securities",
        markup=False,
    )
    for ticker, windows in listings.reused[:20]:
        console.print(f"  reused symbol {ticker}: {windows}", markup=False)
    for security_id, symbols in listings.renamed[:20]:
        console.print(f"  one security across symbols {security_id}: {symbols}", markup=False)


def print_findings(console: Console, findings: list[Finding], limit: int = 20) -> None:
    """What `audit --deep` found, grouped by kind."""
    if not findings:
        console.print("files and ledger agree", markup=False)
        return
    by_kind: dict[str, list[Finding]] = {}
    for finding in findings:
        by_kind.setdefault(finding.kind, []).append(finding)
    for kind, items in sorted(by_kind.items()):
        console.print(f"{kind}: {len(items)}", markup=False)
        for item in items[:limit]:
            console.print(f"  {item.path}: {item.detail}", markup=False)
        if len(items) > limit:
            console.print(f"  ... and {len(items) - limit} more", markup=False)


def print_quality(console: Console, report) -> None:  # type: ignore[no-untyped-def]
    """What `audit --quality` found, per check, with examples (ASCII-safe)."""
    console.print(
        f"quality: {report.files:,} files, {report.bars:,} bars checked "
        f"({', '.join(report.datasets)}): {'clean' if report.clean else f'{report.flags:,} flags'}",
        markup=False,
    )
    if report.without_daily:
        names = some_of(report.without_daily)
        console.print(
            f"  not compared with daily bars (none stored): {len(report.without_daily):,} tickers' sessions, "
            f"so no volume_mismatch or missing_session could be found for them ({names}; "
            "plan --dataset day over the same range, run, then audit --quality again)",
            markup=False,
        )
    for name, count in report.counts.items():
        if not count:
            continue
        console.print(f"  {name}: {count:,}", markup=False)
        for example in report.examples.get(name, []):
            console.print(f"    {example}", markup=False)
    if not report.clean:
        console.print('  all flags: polyledger sql "SELECT * FROM quality_flags"', markup=False)

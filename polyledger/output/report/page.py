"""The report as one self-contained HTML page: CSS inline, the charts embedded as data URIs."""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyledger.checks.audit import listing_summary
from polyledger.ledger import Ledger, queries
from polyledger.output.report.charts import STATE_COLORS, bars_png, coverage_png, failures_png
from polyledger.output.report.queries import (
    DatasetSummary,
    bars_over_time,
    coverage_grids,
    dataset_summaries,
    failure_classes,
    period_states,
    quality,
)
from polyledger.replace_file import replace_file


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    coverage_png: Path


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
        sections.append(_listings_section(ledger))
    page = PAGE.format(title=_e(title), css=CSS, body="\n".join(s for s in sections if s))
    replace_file(out, lambda temporary: temporary.write_text(page, encoding="utf-8"))
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
        unplanned = sum(s.unplanned for s in summaries)
        if unplanned:
            reasons.append(
                f"{unplanned:,} trading days inside the planned range in no unit (see `polyledger audit`)"
            )
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


def _listings_section(ledger: Ledger) -> str:
    """Where a symbol is not one security: reused symbols, renamed companies, and bars
    that belong to no known listing."""
    summary = listing_summary(ledger)  # the audit's own reading of the table
    unattributed = queries.unattributed_bars(ledger)
    if not (summary.reused or summary.renamed or unattributed):
        return ""
    parts = [
        f"<p>{summary.listings:,} listings of {summary.symbols:,} symbols, "
        f"{summary.securities:,} securities. Every stored bar carries its <code>ticker</code> "
        "as traded and its <code>security_id</code>.</p>"
    ]
    if summary.reused:
        parts.append("<h3>Symbols with several listings (reused by another company)</h3>")
        parts.append(
            _table(["ticker", "listings (window and security_id)"], [list(r) for r in summary.reused])
        )
    if summary.renamed:
        parts.append("<h3>Securities across symbols (renames)</h3>")
        parts.append(_table(["security_id", "symbols"], [list(r) for r in summary.renamed]))
    if unattributed:
        parts.append(
            '<p class="warn">Bars inside no known listing of their symbol, kept with a null '
            "<code>security_id</code> (never given to a neighbouring company):</p>"
        )
        rows = [[r.dataset, r.ticker, f"{r.first_day} .. {r.last_day}", r.bars] for r in unattributed]
        parts.append(_table(["dataset", "ticker", "dates", "bars"], rows, numeric={3}))
    return _section("Listings", "".join(parts))


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

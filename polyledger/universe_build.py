"""Building a survivorship-bias-free universe: active and delisted tickers, their details,
filters, and a funnel saying what each filter kept.

The tickers list is a handful of pages (1,000 names each) and is read again each time;
the details, one request per ticker, are `details` units in the ledger, so an interrupted
build resumes where it stopped and a failed request is reported with its reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from polyledger.datasets.details import DETAILS
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunReport, RunStats
from polyledger.ledger import Ledger, PlannedUnit, queries
from polyledger.periods import et_today
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchCost
from polyledger.polygon.reference import iter_results
from polyledger.storage import BarStore

COLUMNS = (
    "ticker",
    "name",
    "primary_exchange",
    "type",
    "active",
    "cik",
    "composite_figi",
    "list_date",
    "delisted_utc",
    "market_cap",
)
LIST_SCHEMA = {
    "ticker": pl.String(),
    "name": pl.String(),
    "primary_exchange": pl.String(),
    "type": pl.String(),
    "active": pl.Boolean(),
    "cik": pl.String(),
    "composite_figi": pl.String(),
    "delisted_utc": pl.String(),
}


@dataclass
class UniverseReport:
    funnel: list[tuple[str, int]] = field(default_factory=list)  # (step, names left)
    failed_details: list[tuple[str, str]] = field(default_factory=list)  # (ticker, reason)
    run: RunReport | None = None
    written: list[Path] = field(default_factory=list)
    outcome: str = "finished"  # or interrupted / stopped: then nothing is written

    def funnel_text(self) -> str:
        return " -> ".join(f"{step} {count:,}" for step, count in self.funnel)


def list_tickers(client: PolygonClient, as_of: dt.date | None) -> pl.DataFrame:
    """Every stock ticker, active and delisted (two passes: the API defaults to active)."""
    frames = []
    for active in ("true", "false"):
        params = {"market": "stocks", "active": active, "limit": "1000"}
        if as_of is not None:
            params["date"] = as_of.isoformat()
        rows = [
            row for page in iter_results(client, "/v3/reference/tickers", params, FetchCost()) for row in page
        ]
        frames.append(
            pl.DataFrame(
                [{k: row.get(k) for k in LIST_SCHEMA} for row in rows], schema=LIST_SCHEMA, strict=False
            )
        )
    # a symbol reused after a delisting appears in both passes: keep the active listing
    return pl.concat(frames).unique(subset="ticker", keep="first", maintain_order=True)


def build_universe(
    run: Run,
    *,
    types: Sequence[str],
    exchanges: Sequence[str],
    cap_max: float | None,
    as_of: dt.date | None,
    out: Path,
    on_tick: Callable[[RunStats], None] | None = None,
) -> UniverseReport:
    """List, filter by type and exchange, fetch details (ledger units), filter by market
    cap, write `out` (CSV) and the same table as Parquet beside it."""
    if out.suffix.lower() != ".csv":
        raise InputError(f"--out must be a .csv file (a .parquet copy is written beside it): {out}")
    if not out.parent.is_dir():
        raise InputError(f"folder for --out does not exist: {out.parent}")
    report = UniverseReport()
    try:
        listed = list_tickers(run.client, as_of)
    except Stopped:  # Ctrl-C while listing
        report.outcome = "interrupted"
        return report
    report.funnel.append(("listed", listed.height))
    kept = listed.filter(
        pl.col("type").is_in(list(types)) & pl.col("primary_exchange").is_in(list(exchanges))
    )
    report.funnel.append((f"{'+'.join(types)} on {'/'.join(exchanges)}", kept.height))
    if kept.height == 0:
        raise InputError(
            f"no ticker of type {'/'.join(types)} on {'/'.join(exchanges)} among {listed.height:,} listed: "
            "check --type and --exchange (nothing written)"
        )

    # details are fetched as of the build date (today unless --date): a rebuild another day
    # asks again, a rebuild the same day resumes and reuses what was fetched
    day = as_of or et_today()
    period = day.isoformat()
    run.ledger.add_units(_details_units(kept, day, period))
    report.run = run.execute(on_tick=on_tick)
    report.outcome = report.run.outcome
    if report.outcome != "finished":
        return report  # interrupted or stopped: a universe without all its details is not written
    details = _details(run.ledger, run.store, period)
    report.failed_details = _failed_details(run.ledger, period)

    table = (
        kept.join(details, on="ticker", how="left", suffix="_details")
        .with_columns(pl.coalesce("delisted_utc", "delisted_utc_details").alias("delisted_utc"))
        .select(COLUMNS)
    )
    if cap_max is not None:
        # a delisted name often has no market cap: dropping it would bring survivorship bias back
        table = table.filter(pl.col("market_cap").is_null() | (pl.col("market_cap") < cap_max))
        report.funnel.append((f"cap < {cap_max:,.0f} (or unknown)", table.height))
    table = table.sort("ticker")
    table.write_csv(out)
    parquet = out.with_suffix(".parquet")
    table.write_parquet(parquet)
    report.written = [out, parquet]
    return report


def _details_units(kept: pl.DataFrame, day: dt.date, period: str) -> list[PlannedUnit]:
    """A details unit per ticker, asked as of `day`, or as of its last listed day if it
    was delisted before (a symbol's details after delisting may be gone or reused)."""
    units = []
    for ticker, delisted in kept.select("ticker", "delisted_utc").iter_rows():
        last = day
        if delisted:
            try:
                last = min(day, dt.date.fromisoformat(delisted[:10]) - dt.timedelta(days=1))
            except ValueError:
                pass  # an unreadable date: ask as of `day`
        # period_start is the build date (names the unit's file); period_end the date asked
        units.append(PlannedUnit(DETAILS.name, ticker, day, last, period_name=period))
    return units


def _details(ledger: Ledger, store: BarStore, period: str) -> pl.DataFrame:
    schema = {
        "ticker": pl.String(),
        "list_date": pl.Date(),
        "market_cap": pl.Float64(),
        "delisted_utc": pl.String(),
    }
    frames = [
        store.read_parquet(path).select(list(schema)) for path in queries.done_details_files(ledger, period)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def _failed_details(ledger: Ledger, period: str) -> list[tuple[str, str]]:
    rows = queries.failed_details(ledger, period)
    return [(row.ticker, f"{row.c}: {row.last_error}") for row in rows]

"""The command line: parse, call the library, print. Nothing else lives here.

Exit codes: 0 success; 1 the job is not complete (failed or unsettled units) or a run
stopped itself (bad key, disk full); 2 bad input (nothing was changed); 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sqlite3
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import sqlalchemy.exc
import typer
from rich.console import Console
from rich.table import Table

from polyledger.defaults import (
    DEFAULT_GIVE_UP_AFTER,
    DEFAULT_JUMP_THRESHOLD,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_VOLUME_TOLERANCE,
    DEFAULT_WORKERS,
)
from polyledger.errors import InputError, PolyledgerError, counted, some_of
from polyledger.secrets import RedactingFilter, api_key_from_env, redact

if TYPE_CHECKING:
    from polyledger.flatfiles.reconcile import Reconciliation

app = typer.Typer(
    name="polyledger",
    help="Download Polygon.io / Massive bars into partitioned Parquet, tracked by a SQLite ledger.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

LedgerOpt = typer.Option(
    "ledger.db",
    "--ledger",
    help="Ledger: a SQLite file, or a PostgreSQL database postgresql://user:password@host[:port]/db.",
)


def _data_location(value: str) -> str:
    """A place the files outlive the command in: never '' (the current folder by accident)
    nor memory:// (gone when the process ends, its units `done`)."""
    if not value.strip():
        raise typer.BadParameter("give a folder or a URL such as s3://bucket/prefix")
    if value.lower().startswith("memory://"):
        raise typer.BadParameter("memory:// keeps nothing once the command ends: give a folder or a URL")
    return value


def _optional_data_location(value: Optional[str]) -> Optional[str]:
    """As `_data_location`, where leaving the option out means the remembered one (sync)."""
    return None if value is None else _data_location(value)


DataOpt = typer.Option(
    "data",
    "--data",
    callback=_data_location,
    help="Data folder for the Parquet files, or a URL such as s3://bucket/prefix.",
)
WorkersOpt = typer.Option(DEFAULT_WORKERS, "--workers", min=1, max=256, help="Worker threads.")
RateOpt = typer.Option(
    DEFAULT_RATE, "--rate", min=0.01, help="Requests per second for the whole process (all workers)."
)
BaseUrlOpt = typer.Option(
    None, "--base-url", envvar="POLYGON_BASE_URL", help="API base URL [default: https://api.massive.com]."
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _echo(text: str) -> None:
    _console().print(text, markup=False, highlight=False)


# --- plan -------------------------------------------------------------------------


@app.command()
def plan(
    universe: Optional[Path] = typer.Option(
        None,
        "--universe",
        help="CSV or .parquet file with a 'ticker' column; optional 'list_date' and 'delisted_utc' "
        "columns skip the periods outside each ticker's listing. Not needed for grouped_daily "
        "(ignored if given).",
    ),
    dataset: str = typer.Option(
        "minute",
        "--dataset",
        help="minute (units = months), day (units = years), splits / dividends (a unit per ticker), "
        "or grouped_daily (a unit per NYSE trading day holding every symbol; no universe).",
    ),
    start: Optional[str] = typer.Option(
        None, "--from", help="First US/Eastern date, YYYY-MM-DD (bars only; required for them)."
    ),
    end: Optional[str] = typer.Option(
        None, "--to", help="Last US/Eastern date, inclusive [default: yesterday]."
    ),
    ledger_path: str = LedgerOpt,
) -> None:
    """Add the units for a universe and date range to the ledger (idempotent).

    Example: polyledger plan --universe universe.csv --dataset minute --from 2004-01-01 --to 2025-10-21
    """
    from polyledger import datasets
    from polyledger.datasets.reference import plan_reference
    from polyledger.ledger import Ledger
    from polyledger.periods import et_today, parse_date
    from polyledger.plan import check_range, contradiction_text
    from polyledger.plan import plan as plan_units
    from polyledger.universe import read_members, read_universe

    spec = datasets.get(dataset)
    if spec.planned_by != "plan":
        raise InputError(f"{dataset} units are planned by `polyledger {spec.planned_by}`, not `plan`")
    if spec.needs_universe and universe is None:
        raise InputError(f"--universe is required for {dataset}")
    if not spec.needs_range:
        if start is not None or end is not None:
            raise InputError(f"--from/--to do not apply to {dataset}: a unit holds a ticker's whole history")
        # a unit per ticker: a reused symbol's two rows (two listings) are one unit
        tickers = list(dict.fromkeys(read_universe(universe)))  # type: ignore[arg-type]
        with Ledger(ledger_path) as ledger:
            added = plan_reference(ledger, tickers, dataset, et_today())
            ledger.remember_plan(dataset, _source(universe), None, None)
        _echo(
            f"planned {counted(len(tickers), f'{dataset} unit')} (one per ticker): {added} new, "
            f"{len(tickers) - added} already in {_where(ledger_path)}"
        )
        return
    if start is None:
        raise InputError(f"--from is required for {dataset} bars (YYYY-MM-DD)")
    first = parse_date(start, "--from")
    yesterday = et_today() - dt.timedelta(days=1)
    last = parse_date(end, "--to") if end is not None else yesterday
    check_range(dataset, first, last)
    if last > yesterday:
        raise InputError(
            f"--to {last} has not ended yet (US/Eastern): its bars would be incomplete; use --to {yesterday} "
            "or earlier, and plan again later to extend"
        )
    if not spec.needs_universe:
        with Ledger(ledger_path) as ledger:
            result = plan_units(ledger, [], dataset, first, last)
            ledger.remember_plan(dataset, "", first, last if end is not None else None)
        ignored = " (--universe ignored: each unit holds every symbol)" if universe is not None else ""
        _echo(
            f"planned {counted(result.units_in_plan, f'{dataset} unit')}, one per trading day "
            f"({first} to {last}): "
            f"{result.added} new, {result.already_planned} already in {_where(ledger_path)}{ignored}"
        )
        return
    members = read_members(universe)  # type: ignore[arg-type]  # validated before the ledger is touched
    with Ledger(ledger_path) as ledger:
        result = plan_units(ledger, members, dataset, first, last, source=_source(universe))
        ledger.remember_plan(dataset, _source(universe), first, last if end is not None else None)
    outside = (
        f"; {result.outside_listing} outside listing windows, not planned" if result.outside_listing else ""
    )
    _echo(
        f"planned {counted(result.units_in_plan, f'{dataset} unit')} for {counted(result.tickers, 'ticker')} "
        f"({first} to {last}): {result.added} new, {result.already_planned} already in "
        f"{_where(ledger_path)}{outside}"
    )
    changed = some_of(result.changed)
    if result.backfilled and result.owed_over is not None:
        _echo(
            f"{counted(result.backfilled, 'unit')} planned outside --from/--to, over "
            f"{_span_text(result.owed_over)} "
            f"(within the ranges the files holding them were planned for): the listings of {changed} "
            "changed to reach those days (a listing starting earlier or ending later, a company's new symbol)"
        )
    for other in result.elsewhere:
        _echo(
            f"{counted(other.added, f'{other.dataset} unit')} planned ({other.widened} widened) over "
            f"{_span_text(other.over)}, within the ranges the files holding them were planned for: "
            "the same change of listings"
        )
    if result.widened:
        _echo(f"{counted(result.widened, 'partly planned period')} widened and queued to be fetched whole")
    if result.relisted:
        _echo(
            f"{counted(result.relisted, 'unit')} queued again: their symbol's listings changed over their "
            f"dates since they were settled ({changed}: a done one's bars get the new security_id; an empty "
            "one, which the old windows explained, is asked again)"
        )
    if result.contradicted:
        _echo(contradiction_text(result.contradicted))
    for name, added in result.references:
        _echo(
            f"{counted(added, f'{name} unit')} planned for tickers of this universe that had none "
            f"({name} were planned from it before: a new symbol's adjusted reads need them)"
        )
    if result.busy:
        busy = counted(result.busy, "partly planned period")
        being = "is" if result.busy == 1 else "are"
        _echo(f"{busy} {being} being fetched right now: plan again after the run")


def _span_text(days: tuple[dt.date, dt.date]) -> str:
    return f"{days[0]} to {days[1]}"


# --- run --------------------------------------------------------------------------


@app.command()
def run(
    workers: int = WorkersOpt,
    rate: float = RateOpt,
    base_url: Optional[str] = BaseUrlOpt,
    unadjusted: bool = typer.Option(False, "--unadjusted", help="Request raw (split-unadjusted) bars."),
    dataset: Optional[list[str]] = typer.Option(
        None, "--dataset", help="Only units of this dataset (repeatable)."
    ),
    max_units: Optional[int] = typer.Option(
        None, "--max-units", min=1, help="Stop after claiming this many units."
    ),
    lease_seconds: float = typer.Option(
        DEFAULT_LEASE_SECONDS,
        "--lease-seconds",
        min=1.0,
        max=86_400.0,
        help="Lease on a claimed unit; renewed while working.",
    ),
    max_attempts: int = typer.Option(
        DEFAULT_MAX_ATTEMPTS,
        "--max-attempts",
        min=1,
        help="Tries per unit for transient failures before it is failed.",
    ),
    give_up_after: float = typer.Option(
        DEFAULT_GIVE_UP_AFTER,
        "--give-up-after",
        min=1.0,
        max=86_400.0,
        help="Seconds the API may keep failing before the run stops.",
    ),
    timeout: float = typer.Option(
        DEFAULT_READ_TIMEOUT,
        "--timeout",
        min=0.1,
        max=3_600.0,
        help="Seconds to wait for a response before retrying it.",
    ),
    log_file: Optional[Path] = typer.Option(
        None, "--log-file", help="Also log every retried request, each unit's outcome and the run's end here."
    ),
    processes: str = typer.Option(
        "1",
        "--processes",
        help="Worker processes: a number, or auto (one per CPU core). --workers and --rate are "
        "split among them.",
    ),
    source: str = typer.Option(
        "rest",
        "--source",
        help="Where minute and day bars come from: rest (the API) or flatfiles (the provider's day "
        "files; --unadjusted ledgers only; keys in POLYLEDGER_FLATFILES_KEY_ID and _SECRET).",
    ),
    ledger_path: str = LedgerOpt,
    data: str = DataOpt,
) -> None:
    """Download every pending unit. Safe to start again after any stop, and to run in
    several processes on one ledger.

    Example: POLYGON_API_KEY=... polyledger run --workers 16
    """
    from polyledger.datasets import FLAT_FILE_DATASETS, check_dataset
    from polyledger.fetch.processes import ProcessRun, processes_wanted
    from polyledger.fetch.runner import Run, RunOptions, check_data_folder
    from polyledger.ledger import Ledger
    from polyledger.polygon.client import DEFAULT_BASE_URL
    from polyledger.storage import BarStore

    for name in dataset or []:
        check_dataset(name)
    if source not in ("rest", "flatfiles"):
        raise InputError(f"--source must be rest or flatfiles, got {source!r}")
    if source == "flatfiles":
        from polyledger.flatfiles.route import run_flatfiles
        from polyledger.output.progress import unsettled_text

        flat = run_flatfiles(
            _show_run,
            ledger_path,
            data,
            datasets=tuple(dataset or ()),
            adjusted=not unadjusted,
            processes=processes,
            log_level=_child_log_level(log_file),
            log_setup=lambda: _setup_logging(log_file),
            workers=workers,
            lease_seconds=lease_seconds,
            max_units=max_units,
            max_attempts=max_attempts,
        )
        restaged, pruned = flat.prepared.days_restaged, flat.pruned
        if flat.prepared.unpublished_again:
            again = flat.prepared.unpublished_again
            _echo(f"units tried again that waited for a day file not published: {again:,}")
        if flat.prepared.outdated_again:
            again = flat.prepared.outdated_again
            _echo(
                f"units built again whose day files were read for fewer tickers (or not planned): {again:,}"
            )
        if flat.prepared.unplanned_again:
            again = flat.prepared.unplanned_again
            _echo(f"units failed days_unread for day files never planned, built again: {again:,}")
        if restaged:
            _echo(f"day files read again: {restaged:,} (staged for fewer tickers, or deleted)")
        if not flat.years:
            _echo("nothing to read: no unit of the flat-file route is pending")
        if flat.years_left:
            more = f"{flat.years_left} more year{'s' if flat.years_left != 1 else ''}"
            _echo(f"--max-units reached: {more} to read and build: run again to go on")
        if flat.build_skipped:
            left = f"{flat.days_left:,} day files still to read" if flat.days_left else "--max-units reached"
            _echo(f"ticker units not built this run ({left}): run again to go on")
        outdated = sum(run.stats.errors.get("days_outdated", 0) for run in flat.runs)
        if outdated:
            _echo(
                f"{outdated:,} units need day files read again (a `plan` during the run, or their "
                "staged files deleted): run again to read those days and build them"
            )
        waiting = sum(run.stats.errors.get("not_published", 0) for run in flat.runs)
        if waiting:
            _echo(
                f"{waiting:,} units wait for day files not published yet (the provider publishes a day's "
                "file around 11:00 US/Eastern the next day): run again later, nothing else to do"
            )
        if pruned is not None and (pruned.deleted or pruned.kept):
            kept = f"; {pruned.kept:,} could not be deleted (see the log)" if pruned.kept else ""
            _echo(f"staged day files deleted: {pruned.deleted:,} (every unit of their periods settled){kept}")
        if flat.outcome == "finished" and flat.unsettled:  # a stopped run says so already
            _echo(f"not complete: {unsettled_text(flat.unsettled)}")
        if flat.outcome == "interrupted":
            raise typer.Exit(130)
        if not flat.ok:
            raise typer.Exit(1)
        return
    if set(dataset or ()) & set(FLAT_FILE_DATASETS):
        raise InputError("minute_files and day_files units are read by `polyledger run --source flatfiles`")
    process_count = processes_wanted(processes, workers)
    api_key = api_key_from_env()
    if not api_key:
        raise InputError("no API key: set POLYGON_API_KEY (or MASSIVE_API_KEY)")
    url = _check_base_url(DEFAULT_BASE_URL if base_url is None else base_url)
    if log_file is not None and not log_file.parent.is_dir():
        raise InputError(f"folder for --log-file does not exist: {log_file.parent}")
    if log_file is not None and log_file.is_dir():
        raise InputError(f"--log-file {log_file} is a folder: give a file in it")
    with Ledger(ledger_path, create=False) as ledger:
        store = BarStore(data)
        store.ensure_writable()
        adjusted = not unadjusted
        _setup_logging(log_file)
        options = RunOptions(
            workers=workers,
            rate=rate,
            adjusted=adjusted,
            lease_seconds=lease_seconds,
            # the flat-file route's day units are never asked of the API
            datasets=tuple(dataset) if dataset else None,  # None: every dataset but flat files' days
            max_units=max_units,
            max_attempts=max_attempts,
            give_up_after=give_up_after,
            timeout=(min(10.0, timeout), timeout),
        )
        # for `sync`, once the run cannot be refused (exit 2 changes nothing), before it
        # starts (a sync may begin while a long first run goes on)
        check_data_folder(ledger, store, options)
        from polyledger.sync import remember_run

        remember_run(
            ledger,
            workers=workers,
            rate=rate,
            base_url=url,
            data=data,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            give_up_after=give_up_after,
            timeout=options.timeout,
        )
        if process_count > 1:
            job = ProcessRun(
                ledger, ledger_path, data, base_url=url, options=options, processes=process_count,
                log_level=_child_log_level(log_file),
            )  # fmt: skip
        else:
            job = Run(ledger, store, api_key=api_key, base_url=url, options=options)
        report = _show_run(job)
    if report.outcome == "interrupted":
        raise typer.Exit(130)
    if not report.ok:
        raise typer.Exit(1)


def _reconcile(ledger, store, sample: int):  # type: ignore[no-untyped-def]
    """`audit --reconcile N`: with an API client when a key is set (flat-file units need
    one), and the bucket when its keys are set (REST units whose staged days were deleted)."""
    import os

    from polyledger.flatfiles.reconcile import reconcile
    from polyledger.flatfiles.source import FlatFilesConfig, FlatFilesSource
    from polyledger.polygon.client import DEFAULT_BASE_URL, PolygonClient
    from polyledger.polygon.ratelimit import RateLimiter

    api_key = api_key_from_env()
    client = None
    if api_key:
        url = _check_base_url(os.environ.get("POLYGON_BASE_URL") or DEFAULT_BASE_URL)
        client = PolygonClient(api_key, base_url=url, limiter=RateLimiter(5.0, burst=1))
    try:
        source = FlatFilesSource(FlatFilesConfig.from_env())
    except InputError:  # no flat-file keys: units needing the bucket are skipped
        source = None
    try:
        return reconcile(ledger, store, sample, client=client, source=source)
    finally:
        if client is not None:
            client.close()


def _reconcile_summary(reconciled: Reconciliation, sample: int) -> str:
    """`audit --reconcile N`'s last line: how many units were compared, why others were not."""
    from polyledger.flatfiles.reconcile import SKIPPED

    line = f"reconcile: {len(reconciled.compared)} of {sample} units compared"
    if reconciled.skipped:
        reasons = ", ".join(f"{count:,} {SKIPPED[reason]}" for reason, count in reconciled.skipped.items())
        line += f"; {reconciled.skipped.total():,} could not be: {reasons}"
    tried = len(reconciled.compared) + reconciled.skipped.total()
    if tried < sample:
        line += f" ({tried:,} done minute/day units in all)"
    return line


def _show_run(job):  # type: ignore[no-untyped-def]
    """One run (`Run`, or `ProcessRun` for --processes) with the live display and its
    summary (the flat-file route runs two a year)."""
    from polyledger.fetch.processes import ProcessRun
    from polyledger.output.progress import RunDisplay, print_summary

    console = _console()
    window = job.options.window
    if window is not None:  # the flat-file route: a year's days, then its units
        _echo(f"{window[0].year}: {', '.join(job.options.datasets)}")
    # a ProcessRun is its own client for the display: the sums over its children
    with (
        RunDisplay(console, job if isinstance(job, ProcessRun) else job.client) as display,
        _signals_stop(job),
    ):
        report = job.execute(on_tick=display.tick)
    print_summary(console, report)
    if isinstance(job, ProcessRun):
        _echo(f"processes: {', '.join(report.processes)} (one row each in the runs table)")
        for line in report.lost:
            _echo(line)
    return report


def _child_log_level(log_file: Path | None) -> int:
    """What children of --processes send up: the records the log file keeps; without one,
    warnings only."""
    return logging.INFO if log_file else logging.WARNING


def _check_base_url(url: str) -> str:
    from urllib.parse import urlsplit

    url = url.rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InputError(f"invalid --base-url {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--base-url must look like https://host[:port], got {url!r}")
    if not all(char.isalnum() or char in ".-_:" for char in parts.hostname):  # a space, a comma...
        raise InputError(f"invalid --base-url {url!r}: {parts.hostname!r} is not a host name")
    if parts.username or parts.password or parts.query or parts.fragment:
        # the key travels in a header; a URL is logged and stored with the run
        raise InputError("--base-url must be https://host[:port][/path] without credentials or a query")
    if redact(url) != url:  # the key pasted into the path: it would be stored with the run
        raise InputError("--base-url holds the API key: give the URL without it (the key goes in a header)")
    return url


def _signals_stop(job):  # type: ignore[no-untyped-def]
    """The first Ctrl-C (or SIGTERM) asks the run to stop gracefully: no new units, units
    in flight finish or go back to pending. A second one quits at once (still safe)."""
    from polyledger import signals

    return signals.handling(signals.graceful_stop(job.request_stop, job.stop.is_set))


def _setup_logging(log_file: Optional[Path]) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.WARNING)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(RedactingFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


# --- status / audit / sql ---------------------------------------------------------


@app.command()
def status(ledger_path: str = LedgerOpt) -> None:
    """Units and rows per dataset and state."""
    from polyledger.checks.audit import status_counts
    from polyledger.ledger import Ledger

    with Ledger(ledger_path, create=False) as ledger:
        rows = status_counts(ledger)
    table = Table("dataset", "state", "units", "rows")
    for row in rows:
        table.add_row(row["dataset"], row["state"], f"{row['units']:,}", f"{row['rows']:,}")
    _console().print(table)


@app.command()
def audit(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    deep: bool = typer.Option(
        False, "--deep", help="Also compare the files on disk with the ledger (rows, checksums, strays)."
    ),
    quality: bool = typer.Option(
        False,
        "--quality",
        help="Also scan the bars: duplicates, order, OHLC, session hours, jumps, minute vs daily volume. "
        "Findings are stored in the ledger table quality_flags.",
    ),
    volume_tolerance: float = typer.Option(
        DEFAULT_VOLUME_TOLERANCE,
        "--volume-tolerance",
        min=0.0,
        help="With --quality: minute vs daily volume mismatch allowed.",
    ),
    jump: float = typer.Option(
        DEFAULT_JUMP_THRESHOLD,
        "--jump",
        min=0.001,
        help="With --quality: |log return| between bars flagged as a jump.",
    ),
    reconcile: int = typer.Option(
        0,
        "--reconcile",
        min=0,
        help="Also compare N sampled minute/day units with the other route, bar for bar (vwap aside): "
        "flat-file units with the API (key and POLYGON_BASE_URL from the environment), API units "
        "with their staged day files.",
    ),
    etags: bool = typer.Option(
        False,
        "--etags",
        help="First list the flat-file bucket: units read from a day file replaced since are stale "
        "(keys as for run --source flatfiles).",
    ),
    ledger_path: str = LedgerOpt,
    data: str = DataOpt,
) -> None:
    """Completeness per dataset and year. Exit 0: complete; 1: failed or stale units (or,
    with --deep, files and ledger disagree; with --quality, a bar is flagged; with
    --reconcile, a unit differs or none could be compared); 3: only pending or running
    units left (run again).

    Example: polyledger audit --deep --quality --json
    """
    from polyledger.checks.audit import audit as audit_ledger
    from polyledger.checks.files import deep_check
    from polyledger.ledger import Ledger
    from polyledger.output.render import print_audit, print_findings, print_quality
    from polyledger.storage import BarStore

    if not quality and (volume_tolerance != DEFAULT_VOLUME_TOLERANCE or jump != DEFAULT_JUMP_THRESHOLD):
        raise InputError("--volume-tolerance and --jump apply to --quality only")
    with Ledger(ledger_path, create=False) as ledger:
        if etags:
            from polyledger.flatfiles.etags import check_etags
            from polyledger.flatfiles.source import FlatFilesConfig, FlatFilesSource

            seen = check_etags(ledger, FlatFilesSource(FlatFilesConfig.from_env()))
            if not as_json:
                _echo(f"flat files: {seen.checked:,} day files listed, {seen.changed:,} replaced since read")
        report = audit_ledger(ledger)
        store = BarStore(data)
        findings = deep_check(ledger, store) if deep else []
        checked = None
        if quality:
            from polyledger.checks.quality import check_quality

            checked = check_quality(ledger, store, jump_threshold=jump, volume_tolerance=volume_tolerance)
        reconciled = _reconcile(ledger, store, reconcile) if reconcile else None
    problems = [f for f in findings if f.kind != "stale_file"]
    # files and ledger disagreeing, or flagged bars, need attention whatever the ledger says;
    # --json carries the same code the process exits with
    code = 1 if problems or (checked is not None and not checked.clean) else report.exit_code
    if reconciled is not None:
        for item in reconciled.compared:
            if not as_json:
                _echo(
                    f"reconcile {item.dataset} {item.ticker} {item.period} ({item.source}): "
                    f"{item.bars:,} bars, {item.only_stored} only stored, "
                    f"{item.only_other} only the other route, {item.different} different"
                )
        if not as_json:
            _echo(_reconcile_summary(reconciled, reconcile))
        # none compared is nothing verified: never the silence of all matched
        unverified = not reconciled.compared or any(not item.same for item in reconciled.compared)
        code = code or (1 if unverified else 0)
    if as_json:
        payload = dict(report.to_dict(), exit_code=code)
        if deep:
            payload["deep"] = {"consistent": not problems, "findings": [f.to_dict() for f in findings]}
        if checked is not None:
            payload["quality"] = checked.to_dict()
        if reconciled is not None:
            payload["reconcile"] = [dict(asdict(item), same=item.same) for item in reconciled.compared]
            payload["reconcile_skipped"] = dict(reconciled.skipped)
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        print_audit(_console(), report)
        if deep:
            print_findings(_console(), findings)
        if checked is not None:
            print_quality(_console(), checked)
    if code:
        raise typer.Exit(code)


@app.command()
def report(
    out: Path = typer.Option(
        Path("report.html"), "--out", help="HTML file to write (PNG heatmap beside it)."
    ),
    ledger_path: str = LedgerOpt,
) -> None:
    """One self-contained HTML page: coverage heatmap, bars over time, failures, quality flags.

    Example: polyledger report --out report.html
    """
    from polyledger.ledger import Ledger
    from polyledger.output.report import write_report

    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out must be an .html file: {out}")
    if not out.parent.is_dir():
        raise InputError(f"folder for --out does not exist: {out.parent}")
    with Ledger(ledger_path, create=False) as ledger:
        files = write_report(ledger, out)
    _echo(f"wrote {files.html} and {files.coverage_png}")


@app.command()
def repair(
    ledger_path: str = LedgerOpt,
    data: str = DataOpt,
    yes: bool = typer.Option(False, "--yes", help="Queue units again even when every file is missing."),
) -> None:
    """Make files and ledger agree: queue again every done unit whose file is missing or
    damaged (damaged files are kept in <data>/.quarantine/), remove stray temporaries.
    Parquet files no unit owns, whatever their name, are reported, never moved or deleted.

    Example: polyledger repair && polyledger run
    """
    from polyledger.checks.files import deep_check
    from polyledger.checks.files import repair as repair_units
    from polyledger.ledger import Ledger
    from polyledger.output.render import print_findings
    from polyledger.storage import BarStore
    from polyledger.storage.home import check_home

    store = BarStore(data)
    with Ledger(ledger_path, create=False) as ledger:
        check_home(ledger, store)  # never quarantine another ledger's (or folder's) files
        _refuse_while_running(ledger, "repair")
        findings = deep_check(ledger, store)
        result = repair_units(ledger, store, findings, all_missing_is_fine=yes)
    print_findings(_console(), findings)
    skipped = (
        f"; {result.skipped} left alone: a run changed their units since the check (run repair again)"
        if result.skipped
        else ""
    )
    _echo(
        f"repair: {counted(result.requeued, 'unit')} queued again, "
        f"{counted(len(result.quarantined), 'file')} quarantined, "
        f"{result.temporaries_removed} stray temporaries removed{skipped}"
    )


@app.command()
def retry(
    error_class: str = typer.Option(
        "transient", "--class", help="transient, all, or one error class (e.g. not_entitled)."
    ),
    ticker: Optional[list[str]] = typer.Option(None, "--ticker", help="Only this ticker (repeatable)."),
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="Only this dataset (repeatable)."),
    stale: bool = typer.Option(
        False, "--stale", help="Instead: queue adjusted units that a later split made stale (see audit)."
    ),
    flagged: bool = typer.Option(
        False,
        "--flagged",
        help="Instead: queue settled units (done or empty) that audit --quality flagged (see --check; "
        "--ticker and --dataset narrow it).",
    ),
    check: Optional[list[str]] = typer.Option(
        None, "--check", help="With --flagged: only units with this quality check's flags (repeatable)."
    ),
    ledger_path: str = LedgerOpt,
) -> None:
    """Move failed units back to pending, with a fresh attempt budget.

    Example: polyledger retry --class not_entitled --ticker AAPL
    """
    from polyledger.ledger import Ledger
    from polyledger.requeue import retry_failed, retry_flagged, retry_stale

    if stale and (error_class != "transient" or dataset or flagged):
        raise InputError(
            "--stale chooses its own units (adjusted bars older than a split): only --ticker applies"
        )
    if check and not flagged:
        raise InputError("--check applies to --flagged only")
    if flagged and error_class != "transient":
        raise InputError("--class chooses failed units: it does not apply to --flagged (settled units)")
    with Ledger(ledger_path, create=False) as ledger:
        if flagged:
            count = retry_flagged(ledger, check or (), ticker or (), dataset or ())
            _echo(f"{count} flagged units are pending again: run `polyledger run`, then `audit --quality`")
            return
        if stale:
            count = retry_stale(ledger, ticker or ())
            _echo(f"{count} stale units are pending again: run `polyledger run` to fetch them")
            return
        count = retry_failed(ledger, error_class, ticker or (), dataset or ())
    _echo(f"{count} failed units are pending again: run `polyledger run` to fetch them")


@app.command()
def universe(
    out: Path = typer.Option(..., "--out", help="CSV to write (a .parquet copy goes beside it)."),
    types: str = typer.Option("CS", "--type", help="Ticker types, comma-separated (CS = common stock)."),
    exchanges: str = typer.Option("XNAS,XNYS", "--exchange", help="Primary exchange MICs, comma-separated."),
    cap_max: Optional[float] = typer.Option(None, "--cap-max", min=0.0, help="Keep market cap below this."),
    as_of: Optional[str] = typer.Option(None, "--date", help="Point in time, YYYY-MM-DD [default: today]."),
    workers: int = WorkersOpt,
    rate: float = RateOpt,
    base_url: Optional[str] = BaseUrlOpt,
    ledger_path: str = LedgerOpt,
    data: str = DataOpt,
) -> None:
    """Build a universe of active AND delisted tickers, with list dates and market caps.

    Details requests are ledger units: an interrupted build resumes where it stopped.

    Example: polyledger universe --type CS --exchange XNAS,XNYS --cap-max 2e9 --out universe.csv
    """
    from polyledger.fetch.runner import Run, RunOptions
    from polyledger.ledger import Ledger
    from polyledger.output.progress import RunDisplay
    from polyledger.periods import et_today, parse_date
    from polyledger.polygon.client import DEFAULT_BASE_URL
    from polyledger.storage import BarStore
    from polyledger.universe_build import build_universe

    day = parse_date(as_of, "--date") if as_of is not None else None
    if day is not None and day > et_today():
        raise InputError(f"--date {day} is in the future (US/Eastern): details exist up to today only")
    from polyledger.plan import EARLIEST

    if day is not None and day < EARLIEST:  # as `plan` refuses it
        raise InputError(f"--date {day} is before {EARLIEST}: no stock data exists that early")
    type_list = [t.strip().upper() for t in types.split(",") if t.strip()]
    exchange_list = [e.strip().upper() for e in exchanges.split(",") if e.strip()]
    if not type_list or not exchange_list:
        raise InputError("--type and --exchange each need at least one value")
    api_key = api_key_from_env()
    if not api_key:
        raise InputError("no API key: set POLYGON_API_KEY (or MASSIVE_API_KEY)")
    url = _check_base_url(DEFAULT_BASE_URL if base_url is None else base_url)
    with Ledger(ledger_path) as ledger:
        store = BarStore(data)
        store.ensure_writable()
        options = RunOptions(workers=workers, rate=rate, datasets=("details", "ticker_events"))
        job = Run(ledger, store, api_key=api_key, base_url=url, options=options)
        with RunDisplay(_console(), job.client) as display, _signals_stop(job):
            report = build_universe(
                job,
                types=type_list,
                exchanges=exchange_list,
                cap_max=cap_max,
                as_of=day,
                out=out,
                on_tick=display.tick,
            )
        if report.outcome == "finished":
            ledger.remember_universe(str(out.resolve()), type_list, exchange_list, cap_max, day)
    if report.outcome != "finished":
        _echo(
            f"universe not written: {report.outcome} before every details request was answered; "
            "run the same command again to resume"
        )
        raise typer.Exit(130 if report.outcome == "interrupted" else 1)
    _echo(report.funnel_text())
    if report.reused:
        _echo(f"symbols with several listings (reused): {', '.join(report.reused[:10])}")
    for earlier, current in report.renamed[:10]:
        _echo(f"earlier symbol {earlier} of {current} (ticker events): planned under {current}'s security_id")
    for label, lines in report.event_lines():
        for line in lines[:10]:
            _echo(f"{label}: {line}")
        if len(lines) > 10:
            _echo(f"... and {len(lines) - 10} more {label}s")
    for line in report.other_details[:10]:
        _echo(f"details left out: {line}")
    if len(report.other_details) > 10:
        _echo(f"... and {len(report.other_details) - 10} more details left out")
    for ticker, reason in report.failed_details[:20]:
        _echo(f"details failed: {ticker}: {reason}")
    if len(report.failed_details) > 20:
        _echo(f"... and {len(report.failed_details) - 20} more (polyledger audit)")
    _echo(f"wrote {', '.join(str(p) for p in report.written)}")
    if report.run is not None and not report.run.ok:
        raise typer.Exit(1)


def _where(location: str) -> str:
    """A ledger location for messages: the path, or the URL without its password."""
    from polyledger.ledger.database import describe

    return describe(location)


def _source(universe: Optional[Path]) -> str:
    """A universe file as `sync` finds it again from anywhere: its absolute path."""
    return str(universe.resolve()) if universe is not None else ""


@app.command()
def sync(
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, max=256, help="Worker threads [default: the last run's]."
    ),
    rate: Optional[float] = typer.Option(
        None, "--rate", min=0.01, help="Requests per second, all workers [default: the last run's]."
    ),
    base_url: Optional[str] = typer.Option(
        None,
        "--base-url",
        envvar="POLYGON_BASE_URL",
        help="API base URL [default: the last run's, else https://api.massive.com].",
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        callback=_optional_data_location,
        help="Data folder or URL [default: the last run's, else ./data].",
    ),
    forget: Optional[list[str]] = typer.Option(
        None, "--forget", help="Instead: stop syncing this dataset (repeatable); its units and files stay."
    ),
    now: Optional[str] = typer.Option(None, "--now", hidden=True, help="ISO datetime with offset (tests)."),
    ledger_path: str = LedgerOpt,
) -> None:
    """The nightly job: rebuild the remembered universe as of the last completed session,
    plan every remembered dataset through it, run, audit. Exit codes as audit's (0
    complete, 1 needs attention, 3 work left), 4 another sync holds the ledger's lock.

    Example: polyledger sync --ledger /srv/polyledger/ledger.db
    """
    from polyledger.polygon.client import DEFAULT_BASE_URL
    from polyledger.sync import EXIT_LOCKED, Sync, SyncSettings
    from polyledger.sync_lock import LockHeld

    if forget:
        _forget(ledger_path, forget)
        return
    moment = dt.datetime.now(dt.timezone.utc)
    if now is not None:
        try:
            moment = dt.datetime.fromisoformat(now)
        except ValueError:
            raise InputError(f"invalid --now {now!r}: expected an ISO datetime with its offset") from None
        if moment.tzinfo is None:
            raise InputError(f"--now {now!r} needs its offset (e.g. -05:00)")
    api_key = api_key_from_env()
    if not api_key:
        raise InputError("no API key: set POLYGON_API_KEY (or MASSIVE_API_KEY)")
    settings = SyncSettings(
        api_key=api_key, now=moment, base_url=base_url, data=data, workers=workers, rate=rate
    )
    job = Sync(ledger_path, settings, _console(), DEFAULT_BASE_URL, _check_base_url)
    try:
        code = job.execute()
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_LOCKED) from None
    if code:
        raise typer.Exit(code)


def _forget(ledger_path: str, names: list[str]) -> None:
    from polyledger.ledger import Ledger

    with Ledger(ledger_path, create=False) as ledger:
        remembered = {plan.dataset for plan in ledger.remembered_plans()}
        unknown = [name for name in names if name not in remembered]
        if unknown:
            planned = ", ".join(sorted(remembered)) or "nothing"
            raise InputError(f"sync does not plan {', '.join(unknown)}: it plans {planned}")
        _refuse_blind_adjusted(ledger, names, remembered)
        for name in names:
            ledger.forget_plans(name)
    _echo(f"sync no longer plans {', '.join(names)} (its units and files stay; `plan` it again to resume)")


def _refuse_blind_adjusted(ledger, names: list[str], remembered: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Splits are what tells the adjusted bars sync goes on fetching stale (a split after
    they were read): forgotten alone, a split would never be recorded again and those bars
    would mix two share bases silently, night after night."""
    from polyledger import datasets

    still_synced = sorted(name for name in remembered - set(names) if datasets.get(name).adjustable)
    if "splits" in names and still_synced and ledger.setting("adjusted") == "true":
        both = " ".join(f"--forget {name}" for name in [*still_synced, "splits"])
        raise InputError(
            f"splits tell the adjusted {', '.join(still_synced)} bars sync fetches stale (a split after "
            f"they were read): forget them too (`sync {both}`), or keep splits synced"
        )


def _interrupted() -> NoReturn:
    """Ctrl-C stopped the command: "interrupted", exit 130 (typer alone exits 130 silently)."""
    print("interrupted", file=sys.stderr)
    raise typer.Exit(130)


def _refuse_while_running(ledger, action: str) -> None:  # type: ignore[no-untyped-def]
    from polyledger.ledger.transfer import live_leases

    live = live_leases(ledger.engine)
    if live:
        raise InputError(f"a run holds {counted(live, 'unit')} right now: {action} after it ends")


@app.command()
def sql(
    query: str = typer.Argument(..., help="A read-only SQL query on the ledger."),
    output: str = typer.Option("table", "--format", help="table, csv or json."),
    ledger_path: str = LedgerOpt,
) -> None:
    """Ad-hoc SQL on the ledger, opened read-only.

    Example: polyledger sql "SELECT state, count(*), sum(rows) FROM units GROUP BY state"
    """
    import csv

    from polyledger import signals
    from polyledger.ledger.readonly import run_read_only

    if output not in ("table", "csv", "json"):
        raise InputError(f"unknown --format {output!r}: choose table, csv or json")
    if not query.strip():
        raise InputError('empty query: polyledger sql "SELECT ..."')
    # Ctrl-C (or SIGTERM) stops the query at once, even if the command was started with
    # SIGINT ignored. sqlite3 swallows an exception raised inside its callbacks (the
    # authorizer then answers "not authorized"): the flag tells an interruption apart
    interrupted = threading.Event()

    def interrupt(_signum: int, _frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    try:
        with signals.handling(interrupt):
            columns, rows = run_read_only(ledger_path, query)
    except KeyboardInterrupt:
        _interrupted()
    except InputError:
        if interrupted.is_set():
            _interrupted()
        raise
    if output == "json":
        names = _unique_names(columns)  # `SELECT u.id, a.id`: both kept, as id and id_2
        records = [{name: _finite(value) for name, value in zip(names, row, strict=True)} for row in rows]
        sys.stdout.write(json.dumps(records, indent=2, default=_json_value, allow_nan=False) + "\n")
    elif output == "csv":
        _utf8_when_redirected(sys.stdout)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for column in table.columns:
            column.overflow = "fold"  # never cut a value short
        for row in rows:
            table.add_row(*["" if v is None else str(v) for v in row])
        _console().print(table)


# --- migrate / export / import ----------------------------------------------------


@app.command()
def migrate(ledger_path: str = LedgerOpt) -> None:
    """Upgrade the ledger's schema (SQLite or PostgreSQL) to this polyledger's newest.

    Example: polyledger migrate --ledger postgresql://polyledger@db-host/polyledger
    """
    from polyledger.ledger.transfer import schema_revision

    before, after = schema_revision(ledger_path)
    if before == after:
        _echo(f"{_where(ledger_path)}: schema already at {after}")
    else:
        _echo(f"{_where(ledger_path)}: schema migrated from {before or 'none'} to {after}")


@app.command(name="export")
def export_ledger(
    to: str = typer.Option(..., "--to", help="Target ledger: a PostgreSQL URL (or a SQLite file)."),
    ledger_path: str = LedgerOpt,
) -> None:
    """Copy this ledger, every table as it is, into a new or empty ledger (e.g. PostgreSQL).

    Example: polyledger export --ledger ledger.db --to postgresql://polyledger@db-host/polyledger
    """
    if not to.strip():
        raise InputError("--to is empty: give a PostgreSQL URL or a SQLite file to copy the ledger into")
    _copy(ledger_path, to)


@app.command(name="import")
def import_ledger(
    source: str = typer.Option(
        ..., "--from", help="Ledger to copy from: a PostgreSQL URL (or a SQLite file)."
    ),
    ledger_path: str = LedgerOpt,
) -> None:
    """Copy another ledger (e.g. PostgreSQL), every table as it is, into this new or empty one.

    Example: polyledger import --from postgresql://polyledger@db-host/polyledger --ledger ledger.db
    """
    if not source.strip():
        raise InputError("--from is empty: give the PostgreSQL URL or the SQLite file to copy from")
    if "://" not in source and not Path(source).exists():
        raise InputError(f"no ledger to import at {source}")
    _copy(source, ledger_path)


def _copy(source: str, target: str) -> None:
    from polyledger.ledger.transfer import copy_ledger

    try:
        result = copy_ledger(source, target)
    except KeyboardInterrupt:
        _interrupted()  # the copy is not there, or the target as empty as it was
    counts = ", ".join(f"{rows:,} {table}" for table, rows in result.rows.items())
    _echo(f"copied {result.source} to {result.target}: {counts}")


def _unique_names(columns: Sequence[str]) -> list[str]:
    """Column names as JSON keys: a repeated name gets _2, _3, ... (never one already there)."""
    names: list[str] = []
    for column in columns:
        name, number = column, 1
        while name in names or (number > 1 and name in columns):
            number += 1
            name = f"{column}_{number}"
        names.append(name)
    return names


def _finite(value: object) -> object:
    """JSON has no infinity nor NaN: null for them (the table and CSV show them as they are)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_value(value: object) -> object:
    return value.hex() if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


# --- demo / serve -------------------------------------------------------------------


@app.command()
def demo(
    directory: Path = typer.Option(
        Path("polyledger-demo"), "--dir", help="Where the demo's ledger and data go."
    ),
    workers: int = typer.Option(8, "--workers", min=1, max=64),
    example_ledger: Optional[Path] = typer.Option(None, "--example-ledger", hidden=True),
) -> None:
    """Plan, run and audit a small universe against the bundled stand-in API: no key needed."""
    from polyledger.demo import make_example_ledger, run_demo

    if example_ledger is not None:  # how ledger.db.example is made
        make_example_ledger(example_ledger)
        return
    code = run_demo(directory, workers=workers, console=_console())
    if code:
        raise typer.Exit(code)


@app.command()
def serve(
    port: int = typer.Option(
        8765, "--port", min=0, max=65535, help="0 picks a free port; the URL is printed first."
    ),
    tickers: Optional[str] = typer.Option(
        None, "--tickers", help="Comma-separated tickers [default: the demo's universe]."
    ),
    bars_per_day: int = typer.Option(200, "--bars-per-day", min=1, help="Density of --tickers' minute bars."),
    seed: int = typer.Option(0, "--seed"),
    api_key: Optional[list[str]] = typer.Option(
        None, "--api-key", help="Accepted key (repeatable) [default: demo-key]."
    ),
    latency: float = typer.Option(0.0, "--latency", min=0.0, help="Seconds added to each response."),
    rate_limit: Optional[float] = typer.Option(
        None, "--rate-limit", min=0.01, help="Server-side requests/second per key."
    ),
    rate_burst: Optional[float] = typer.Option(
        None, "--rate-burst", min=1.0, help="Requests a key's bucket holds [default: a second's worth]."
    ),
    retry_after_every: int = typer.Option(
        1, "--retry-after-every", min=1, help="Send Retry-After on every k-th 429 only."
    ),
    fault_rate: float = typer.Option(
        0.0, "--fault-rate", min=0.0, max=1.0, help="Share of bar requests that fail."
    ),
    page_cap: Optional[int] = typer.Option(None, "--page-cap", min=1, help="Largest page the server sends."),
    history_start: Optional[str] = typer.Option(
        None, "--history-start", help="403 before this date (YYYY-MM-DD)."
    ),
    straddle: str = typer.Option(
        "403",
        "--straddle",
        help="A range straddling --history-start: 403, or clip (200 with only the bars from that date on).",
    ),
) -> None:
    """Serve the stand-in Polygon API on 127.0.0.1 until Ctrl-C, to try polyledger by hand.

    Example: polyledger serve --port 8765 --latency 0.05 --fault-rate 0.05
    """
    from polyledger import signals
    from polyledger.demo import DEMO_KEY, demo_market
    from polyledger.periods import parse_date
    from polyledger.symbols import validate_ticker
    from polyledger.testing import FaultPlan, Listing, StandInServer, SyntheticMarket
    from polyledger.testing.server import STRADDLE_MODES

    if rate_limit is not None and not math.isfinite(rate_limit):
        raise InputError(f"--rate-limit must be a number of requests per second, not {rate_limit}")
    if straddle not in STRADDLE_MODES:
        raise InputError(f"--straddle must be one of {', '.join(STRADDLE_MODES)}, not {straddle!r}")
    if tickers:
        names = [validate_ticker(t.strip(), "--tickers") for t in tickers.split(",") if t.strip()]
        market = SyntheticMarket([Listing(t, bars_per_day=bars_per_day) for t in names], seed=seed)
    else:
        market = demo_market()
    server = StandInServer(
        market,
        api_keys=api_key or [DEMO_KEY],
        port=port,
        latency=latency,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        retry_after_every=retry_after_every,
        faults=FaultPlan(rate=fault_rate, seed=seed),
        page_cap=page_cap,
        history_start=parse_date(history_start, "--history-start") if history_start else None,
        straddle=straddle,
    )
    try:
        server.start()
    except OSError as exc:
        raise InputError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    print(server.url, flush=True)
    stop = threading.Event()
    try:
        # its own handler: a server started with SIGINT ignored still stops on Ctrl-C
        with signals.handling(lambda _signum, _frame: stop.set()):
            while not stop.wait(0.5):  # a timed wait: signal handlers run between waits
                pass
    finally:
        server.stop()


# --- entry point -------------------------------------------------------------------


def _make_streams_safe() -> None:
    """Never crash on a console that cannot encode a character (Windows cp1252)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _utf8_when_redirected(stream: object) -> None:
    """Data written to a file or a pipe (`sql --format csv > out.csv`) is UTF-8 whatever the
    console's code page (Windows: cp1252 would turn a company's name into `?`); a console
    keeps its own encoding, its characters replaced where it has none."""
    isatty, reconfigure = getattr(stream, "isatty", None), getattr(stream, "reconfigure", None)
    if isatty is None or reconfigure is None or isatty():
        return
    try:
        reconfigure(encoding="utf-8")
    except (ValueError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code. Errors are one line on stderr."""
    _make_streams_safe()
    command = typer.main.get_command(app)
    try:
        # without standalone mode, click returns an Exit's code instead of raising it
        result = command.main(args=argv, prog_name="polyledger", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value ...
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            return 0
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return 2 if exc.exit_code == 1 else exc.exit_code
    except InputError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except (sqlalchemy.exc.DatabaseError, sqlite3.DatabaseError) as exc:
        # through SQLAlchemy (`orig` is the driver's error) or a raw cursor of the hot path
        detail = redact(" ".join(str(getattr(exc, "orig", None) or exc).split()))
        print(f"error: the ledger refused the operation: {detail}", file=sys.stderr)
        # the ledger as it is cannot be used (read-only, damaged, not a database): input
        unusable = ("readonly", "unable to open", "malformed", "not a database")
        return 2 if any(word in detail for word in unusable) else 1
    except PolyledgerError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        # a PostgreSQL ledger's hot path talks to psycopg directly
        print(
            f"error: the ledger refused the operation: {redact(' '.join(str(exc).split()))}", file=sys.stderr
        )
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()

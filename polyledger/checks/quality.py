"""Data quality of the downloaded bars (`audit --quality`): findings go to the ledger's
`quality_flags` table, so they are queried like everything else.

What is read is what the ledger says is there: the files of `done` units (never a folder
scan). Checks: duplicate_timestamp, non_monotonic, ohlc_violation, non_positive_price,
negative_volume, outside_session (minute bars before 04:00 or from 20:00 ET),
extreme_jump, volume_mismatch and missing_session (minute bars against the daily bar of
the same session: the strongest sign of a silently incomplete month), duplicates_dropped
(repeated timestamps the download itself dropped, from unit_attempts) and unreadable_file.

Memory is bounded by construction: tickers are checked one at a time, and a ticker's
files are read in batches of consecutive units whose ledger row counts add up to at most
BATCH_ROWS (one file always fits: a month of minute bars is at most ~30,000 bars). Between
batches only the previous batch's last bar is carried (for the order and jump checks),
plus one row per session of the ticker for the volume reconciliation. Flags are one per
(unit, session, check), never one per bar, so even a file of bad bars yields a few rows.
Measured on 2 cores: about 1.7 million bars/s, and the process's peak RSS stays ~220 MB
(mostly the polars runtime) whether it checks 0.5 or 5 million bars.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from polyledger import datasets as registry
from polyledger.defaults import DEFAULT_JUMP_THRESHOLD, DEFAULT_VOLUME_TOLERANCE
from polyledger.errors import InputError, one_line
from polyledger.ledger import Ledger, UnitState, queries
from polyledger.periods import ET
from polyledger.storage import BarStore

# the datasets whose spec names quality checks
BAR_DATASETS = tuple(name for name in registry.names() if registry.get(name).quality_checks)
REFERENCE_BARS = "day"  # the per-ticker daily bars other bars are reconciled with
CHECKS = (
    "duplicate_timestamp",
    "non_monotonic",
    "ohlc_violation",
    "non_positive_price",
    "negative_volume",
    "outside_session",
    "extreme_jump",
    "volume_mismatch",
    "missing_session",
    "duplicates_dropped",
    "unreadable_file",
    "grouped_mismatch",
    "missing_in_grouped",
    "missing_in_day",
)
# |ln(close / previous close)| between consecutive bars of a ticker above this is flagged:
# a rise of more than 65% or a fall of more than 39% from one bar to the next. That catches
# decimal-shift errors (x10 is 2.3), bad prints and unadjusted splits of 2:1 or more, while
# real consecutive bars, even of small caps, rarely move that far (and are worth a look when
# they do). In raw (--unadjusted) data the ledger's splits are allowed for.
# (DEFAULT_JUMP_THRESHOLD, in polyledger/defaults.py)
# |sum of a session's minute volume - its daily bar's volume| / daily volume above this is
# flagged. Real Polygon data never matches exactly: the daily bar can count trades that no
# minute bar carries (late reports, corrections, sale conditions that update volume only in
# the daily aggregate), a small share for liquid names and more for thin ones. 5% leaves room
# for that while a lost hour of regular trading (10-15% of a session's volume) still shows;
# whole lost sessions are missing_session whatever the tolerance. Calibrate on your own data
# with the stored values (`value` of volume_mismatch flags). The stand-in's volumes add up
# exactly, so its tests use a tolerance of ~0. (DEFAULT_VOLUME_TOLERANCE, in polyledger/defaults.py)
BATCH_ROWS = 250_000  # bars read at once: ~250k x 10 columns of 8 bytes, ~20 MB
EXAMPLES_PER_CHECK = 3
PRICE_EPSILON = 1e-9  # relative: float noise in adjusted prices is no OHLC violation
SESSION_MINUTES = (4 * 60, 20 * 60)  # 04:00 <= ET time < 20:00
PRICES = ("open", "high", "low", "close")
_ET = str(ET)


@dataclass
class QualityReport:
    """Flags per check (one flag = one unit/session/check), with a few examples each."""

    datasets: list[str]
    jump_threshold: float
    volume_tolerance: float
    files: int = 0
    bars: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)
    # tickers with intraday bars but no daily bar to compare them with: their sessions'
    # volumes and missing sessions (the strongest signs of a silently incomplete month)
    # were not checked, which no flag can say
    without_daily: list[str] = field(default_factory=list)

    @property
    def flags(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.flags == 0

    def add(self, flag: dict) -> None:
        self.counts[flag["check_name"]] += 1
        examples = self.examples.setdefault(flag["check_name"], [])
        if len(examples) < EXAMPLES_PER_CHECK:
            where = " ".join(str(x) for x in (flag["ticker"], flag["session_date"]) if x)
            examples.append(f"{flag['dataset']} {where}: {flag['detail']}")

    def to_dict(self) -> dict:
        return {
            "clean": self.clean,
            "flags": self.flags,
            "datasets": self.datasets,
            "files": self.files,
            "bars": self.bars,
            "jump_threshold": self.jump_threshold,
            "volume_tolerance": self.volume_tolerance,
            "counts": dict(self.counts),
            "examples": {name: list(items) for name, items in self.examples.items()},
            "without_daily": list(self.without_daily),
        }


@dataclass(frozen=True)
class _Unit:
    id: int
    period: str
    period_start: dt.date
    period_end: dt.date
    state: str
    file_path: str | None
    rows: int
    raw: bool  # fetched unadjusted: splits show as jumps, allowed for
    follows: bool  # directly follows the ticker's previous settled unit (no gap)


@dataclass
class _Scan:
    flags: list[dict]
    sessions: pl.DataFrame  # session, volume, bars, unit_id


def check_quality(
    ledger: Ledger,
    data: Path | str | BarStore,
    *,
    datasets: Sequence[str] | None = None,
    jump_threshold: float = DEFAULT_JUMP_THRESHOLD,
    volume_tolerance: float = DEFAULT_VOLUME_TOLERANCE,
) -> QualityReport:
    """Check the files of the `done` units of `datasets`, store the flags in the ledger
    (replacing those of an earlier check of the same datasets) and report them. By default
    the per-ticker bar datasets, and the date-keyed ones (grouped daily) the ledger has."""
    datasets = list(dict.fromkeys(_default_datasets(ledger) if datasets is None else datasets))
    if not datasets or set(datasets) - set(BAR_DATASETS):
        raise InputError(f"quality checks cover {', '.join(BAR_DATASETS)}, not {', '.join(datasets)}")
    if not (jump_threshold > 0 and volume_tolerance >= 0):
        raise InputError("the jump threshold must be positive and the volume tolerance not negative")
    report = QualityReport(datasets, jump_threshold, volume_tolerance)
    store = data if isinstance(data, BarStore) else BarStore(data)  # a folder or an object store URL
    store.ensure_readable()  # else every file would be flagged unreadable
    flags: list[dict] = []
    per_ticker = [name for name in datasets if registry.get(name).keyed_by == "ticker"]
    for ticker in _tickers(ledger, per_ticker) if per_ticker else []:
        flags.extend(_check_ticker(ledger, store, ticker, report))
    for name in datasets:
        if registry.get(name).keyed_by == "date":
            from polyledger.checks.grouped import cross_check  # it builds flags with this module

            found, files, bars = cross_check(ledger, store, name, registry.MARKET)
            flags.extend(found)
            report.files += files
            report.bars += bars
    flags.extend(_dropped_duplicates(ledger, datasets))
    flags.sort(key=lambda f: (f["ticker"], f["dataset"], f["session_date"] or "", f["check_name"]))
    for flag in flags:
        report.add(flag)
    ledger.replace_quality_flags(datasets, flags)
    return report


def _default_datasets(ledger: Ledger) -> list[str]:
    by_ticker = [name for name in BAR_DATASETS if registry.get(name).keyed_by == "ticker"]
    by_date = [name for name in BAR_DATASETS if name not in by_ticker and queries.has_units(ledger, [name])]
    return by_ticker + by_date


def _check_ticker(ledger: Ledger, data: BarStore, ticker: str, report: QualityReport) -> list[dict]:
    """One ticker's bar checks, then its intraday sessions against its daily bars (read even
    when only intraday bars are checked: they are the reference)."""
    splits = _split_steps(ledger, ticker)
    day = _scan(data, _units(ledger, REFERENCE_BARS, ticker), REFERENCE_BARS, ticker, splits, report)
    flags = day.flags if REFERENCE_BARS in report.datasets else []
    for name in report.datasets:
        spec = registry.get(name)
        if name == REFERENCE_BARS or spec.keyed_by != "ticker":
            continue
        units = _units(ledger, name, ticker)
        scanned = _scan(data, units, name, ticker, splits, report)
        flags += scanned.flags
        if "volume_mismatch" in spec.quality_checks and scanned.sessions.height and not day.sessions.height:
            report.without_daily.append(ticker)
        if "volume_mismatch" in spec.quality_checks:
            flags += _reconcile(name, ticker, units, scanned.sessions, day.sessions, report.volume_tolerance)
    return flags


# --- reading -----------------------------------------------------------------------------


def _tickers(ledger: Ledger, datasets: Sequence[str]) -> list[str]:
    return queries.done_tickers(ledger, datasets)


def _units(ledger: Ledger, dataset: str, ticker: str) -> list[_Unit]:
    """The ticker's settled units in time order: done ones have a file; empty_confirmed ones
    count for missing sessions and for telling a gap from a quiet month."""
    rows = queries.settled_units(ledger, dataset, ticker)
    units, previous_end = [], None
    for row in rows:
        start, end = dt.date.fromisoformat(row.period_start), dt.date.fromisoformat(row.period_end)
        follows = previous_end is not None and start == previous_end + dt.timedelta(days=1)
        raw = row.adjusted is not None and not row.adjusted
        units.append(
            _Unit(row.id, row.period, start, end, row.state, row.file_path, row.rows or 0, raw, follows)
        )
        previous_end = end
    return units


def _split_steps(ledger: Ledger, ticker: str) -> list[tuple[dt.date, float]]:
    """(execution date, ln(split_from / split_to)): how a raw price moves at each split."""
    rows = queries.splits_of(ledger, ticker)
    return [(dt.date.fromisoformat(r.execution_date), math.log(r.split_from / r.split_to)) for r in rows]


def _batches(units: Sequence[_Unit], limit: int = BATCH_ROWS) -> Iterator[list[_Unit]]:
    """Consecutive done units holding at most `limit` bars together (or one unit)."""
    batch: list[_Unit] = []
    rows = 0
    for unit in units:
        if unit.state != UnitState.DONE or not unit.file_path:
            continue
        if batch and rows + unit.rows > limit:
            yield batch
            batch, rows = [], 0
        batch.append(unit)
        rows += unit.rows
    if batch:
        yield batch


def _scan_file(data: BarStore, unit: _Unit) -> pl.LazyFrame:
    scan = data.scan_parquet([unit.file_path], hive_partitioning=False)  # type: ignore[list-item]
    # a file from before listings has no security_id: one security, any constant keeps its returns
    attributed = "security_id" in scan.collect_schema()
    return scan.select(
        pl.col("timestamp").cast(pl.Datetime("ms", "UTC")),
        *[pl.col(name).cast(pl.Float64) for name in (*PRICES, "volume")],
        pl.col("security_id") if attributed else pl.lit("", dtype=pl.String).alias("security_id"),
        pl.lit(unit.id, dtype=pl.Int64).alias("unit_id"),
        pl.lit(unit.raw).alias("raw"),
        pl.lit(unit.follows).alias("follows"),
        pl.lit(False).alias("carried"),
    )


def _read(data: BarStore, units: list[_Unit]) -> tuple[pl.DataFrame, list[tuple[_Unit, str]]]:
    """A batch's bars in unit order, and the units whose file could not be read (why)."""
    try:
        return pl.concat([_scan_file(data, unit) for unit in units]).collect(), []
    except (OSError, pl.exceptions.PolarsError) as exc:
        if len(units) == 1:
            return pl.DataFrame(), [(units[0], one_line(exc))]
    frames, unreadable = [], []
    for unit in units:  # find the bad file(s), keep the rest
        frame, bad = _read(data, [unit])
        unreadable += bad
        if frame.height:
            frames.append(frame)
    return (pl.concat(frames) if frames else pl.DataFrame()), unreadable


# --- bar checks ----------------------------------------------------------------------------


def _scan(
    data: BarStore, units: list[_Unit], dataset: str, ticker: str, splits: list, report: QualityReport
) -> _Scan:
    """Bar checks over a ticker's files of one dataset, batch by batch, and its session volumes."""
    checked = dataset in report.datasets
    flags: list[dict] = []
    sessions: list[pl.DataFrame] = []
    carry: pl.DataFrame | None = None  # the previous batch's last bar
    for batch in _batches(units):
        bars, unreadable = _read(data, batch)
        if checked:
            report.files += len(batch) - len(unreadable)
            report.bars += bars.height
            flags += [_unreadable_flag(dataset, ticker, unit, error) for unit, error in unreadable]
        if not bars.height:
            continue
        frame = _annotate(bars if carry is None else pl.concat([carry, bars]), splits)
        if checked:
            flags += _bar_flags(frame, dataset, ticker, report.jump_threshold)
        sessions.append(_session_volumes(frame))
        carry = bars.tail(1).with_columns(carried=pl.lit(True))
    if not sessions:
        return _Scan(flags, pl.DataFrame(schema=SESSION_SCHEMA))
    total = (
        pl.concat(sessions).group_by("session").agg(pl.col("volume", "bars").sum(), pl.col("unit_id").first())
    )
    return _Scan(flags, total.sort("session"))


def _annotate(bars: pl.DataFrame, splits: list[tuple[dt.date, float]]) -> pl.DataFrame:
    """Per bar: ET session and minute of day, repeated or backwards timestamp, and the
    log return from the previous bar's close (none across a gap in the ticker's units, nor
    between two securities of one symbol or from a bar of no known listing)."""
    local = pl.col("timestamp").dt.convert_time_zone(_ET)
    frame = bars.with_columns(
        session=local.dt.date(), minute=local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute()
    )
    expected = pl.lit(0.0)
    if splits:  # a raw price steps by ln(split ratio) from the last bar before a split to the first after
        basis = pl.sum_horizontal(
            pl.when(pl.col("session") >= day).then(step).otherwise(0.0) for day, step in splits
        )
        expected = pl.when(pl.col("raw")).then(basis - basis.shift(1)).otherwise(0.0)
    gap = (pl.col("unit_id") != pl.col("unit_id").shift(1)) & ~pl.col("follows")
    owner = pl.col("security_id")  # a reused symbol's next company is no price move
    gap = gap | owner.is_null() | owner.ne_missing(owner.shift(1))
    close, prev_close = pl.col("close"), pl.col("close").shift(1)
    return frame.with_columns(
        repeat=~pl.col("timestamp").is_first_distinct(),
        backwards=pl.col("timestamp") < pl.col("timestamp").shift(1),
        prev_close=prev_close,
        log_return=pl.when(~gap & (close > 0) & (prev_close > 0)).then((close / prev_close).log() - expected),
    )


def _conditions(dataset: str, jump_threshold: float) -> dict[str, tuple[pl.Expr, pl.Expr | None]]:
    """check name -> (which bars fail it, the figure to report; None: the count of bars)."""
    low, high = pl.col("low"), pl.col("high")
    body_low, body_high = pl.min_horizontal("open", "close"), pl.max_horizontal("open", "close")
    lowest = pl.min_horizontal(*PRICES)
    conditions = {
        "duplicate_timestamp": (pl.col("repeat"), None),
        "non_monotonic": (pl.col("backwards"), None),
        "ohlc_violation": (
            (low - body_low > PRICE_EPSILON * body_low.abs())
            | (body_high - high > PRICE_EPSILON * body_high.abs())
            | (low > high),
            None,
        ),
        "non_positive_price": (lowest <= 0, lowest),
        "negative_volume": (pl.col("volume") < 0, pl.col("volume")),
        "extreme_jump": (pl.col("log_return").abs() > jump_threshold, pl.col("log_return")),
    }
    if "outside_session" in registry.get(dataset).quality_checks:
        first, end = SESSION_MINUTES
        conditions["outside_session"] = ((pl.col("minute") < first) | (pl.col("minute") >= end), None)
    return conditions


def _bar_flags(frame: pl.DataFrame, dataset: str, ticker: str, jump_threshold: float) -> list[dict]:
    """One flag per (check, unit, session), describing its worst (or first) bar."""
    parts = []
    for name, (failing, figure) in _conditions(dataset, jump_threshold).items():
        value = figure if figure is not None else pl.lit(None, dtype=pl.Float64)
        parts.append(
            frame.lazy()
            .filter(failing & ~pl.col("carried"))
            .select(
                pl.lit(name).alias("check"),
                "unit_id",
                "session",
                *PRICES,
                "prev_close",
                "timestamp",
                value=value,
            )
        )
    worst = pl.struct("timestamp", *PRICES, "prev_close", "value").sort_by(
        pl.col("value").abs().fill_null(0.0), descending=True, maintain_order=True
    )
    grouped = (
        pl.concat(parts)
        .group_by("check", "unit_id", "session")
        .agg(pl.len().alias("bars"), worst.first().alias("worst"))
        .collect()
    )
    return [
        quality_flag(
            dataset, ticker, row["session"], row["check"], row["unit_id"], *_describe(row, jump_threshold)
        )
        for row in grouped.iter_rows(named=True)
    ]


# how each bar check reads; `value` is the worst bar's figure, or the count of bars
DETAILS = {
    "duplicate_timestamp": "{bars} repeat an earlier bar's timestamp (first at {at})",
    "non_monotonic": "{bars} earlier than the bar before (first at {at})",
    "ohlc_violation": "{bars} with low above min(open, close) or high below max(open, close) "
    "(first at {at}: o={open:g} h={high:g} l={low:g} c={close:g})",
    "non_positive_price": "{bars} with a price <= 0 (lowest {value:g}, at {at})",
    "negative_volume": "{bars} with negative volume (lowest {value:g}, at {at})",
    "outside_session": "{bars} outside 04:00-20:00 ET (first at {at})",
    "extreme_jump": "close {prev_close:g} -> {close:g} at {at}: log return {value:+.3f}, beyond "
    "{threshold:g} ({bars} in the session)",
}


def _describe(row: dict, jump_threshold: float) -> tuple[str, float]:
    """(human detail, value) of a grouped bar flag."""
    n, worst = row["bars"], row["worst"]
    local = worst["timestamp"].astimezone(ET)
    at = local.strftime("%H:%M ET") if local.time() != dt.time() else local.strftime("%Y-%m-%d")
    value = worst["value"] if worst["value"] is not None else n
    fields = dict(worst, value=value, at=at, bars=f"{n} bar{'s' if n != 1 else ''}", threshold=jump_threshold)
    return DETAILS[row["check"]].format(**fields), value


def quality_flag(
    dataset: str,
    ticker: str,
    session: dt.date | None,
    check: str,
    unit_id: int | None,
    detail: str,
    value: float | None,
) -> dict:
    return {
        "dataset": dataset,
        "ticker": ticker,
        "session_date": session.isoformat() if session else None,
        "check_name": check,
        "detail": detail,
        "value": None if value is None else float(value),
        "unit_id": unit_id,
    }


def _unreadable_flag(dataset: str, ticker: str, unit: _Unit, error: str) -> dict:
    detail = f"{unit.file_path} ({unit.period}) cannot be read: {error}; see audit --deep and repair"
    return quality_flag(dataset, ticker, None, "unreadable_file", unit.id, detail, None)


# --- minute against day ------------------------------------------------------------------

SESSION_SCHEMA = {"session": pl.Date, "volume": pl.Float64, "bars": pl.UInt32, "unit_id": pl.Int64}


def _session_volumes(frame: pl.DataFrame) -> pl.DataFrame:
    """Volume and bars per ET session (a repeated timestamp counted once)."""
    kept = frame.filter(~pl.col("carried") & ~pl.col("repeat"))
    return kept.group_by("session").agg(
        pl.col("volume").sum(), pl.len().cast(pl.UInt32).alias("bars"), pl.col("unit_id").first()
    )


def _reconcile(
    dataset: str,
    ticker: str,
    minute_units: list[_Unit],
    minute: pl.DataFrame,
    day: pl.DataFrame,
    tolerance: float,
) -> list[dict]:
    """Sessions whose minute volume is off the daily bar's, and daily bars with no minute
    bars at all inside a settled minute unit."""
    if not day.height:
        return []
    day = day.select("session", day_volume="volume")
    both = minute.join(day, on="session").with_columns(
        off=(pl.col("volume") - pl.col("day_volume")).abs() / pl.col("day_volume")
    )
    flags = [
        quality_flag(
            dataset,
            ticker,
            row["session"],
            "volume_mismatch",
            row["unit_id"],
            f"minute bars sum to {row['volume']:,.0f} shares ({row['bars']} bars), the daily bar says "
            f"{row['day_volume']:,.0f}: {row['off']:.2%} off (tolerance {tolerance:.2%})",
            row["off"],
        )
        for row in both.filter((pl.col("day_volume") > 0) & (pl.col("off") > tolerance)).iter_rows(named=True)
    ]
    return flags + _missing_sessions(
        dataset, ticker, minute_units, day.join(minute, on="session", how="anti")
    )


def _missing_sessions(
    dataset: str, ticker: str, minute_units: list[_Unit], missing: pl.DataFrame
) -> list[dict]:
    covering = pl.DataFrame(
        {
            "period_start": [u.period_start for u in minute_units],
            "period_end": [u.period_end for u in minute_units],
            "unit_id": [u.id for u in minute_units],
            "period": [u.period for u in minute_units],
            "state": [u.state for u in minute_units],
        },
        schema={
            "period_start": pl.Date,
            "period_end": pl.Date,
            "unit_id": pl.Int64,
            "period": pl.String,
            "state": pl.String,
        },
    )
    found = missing.sort("session").join_asof(
        covering.sort("period_start"), left_on="session", right_on="period_start", strategy="backward"
    )
    return [
        quality_flag(
            dataset,
            ticker,
            row["session"],
            "missing_session",
            row["unit_id"],
            f"the daily bar has {row['day_volume']:,.0f} shares but there is no minute bar "
            f"(minute unit {row['period']} is {row['state']})",
            row["day_volume"],
        )
        for row in found.filter(pl.col("session") <= pl.col("period_end")).iter_rows(named=True)
    ]


def _dropped_duplicates(ledger: Ledger, datasets: Sequence[str]) -> list[dict]:
    """Done units whose latest successful fetch dropped repeated timestamps."""
    rows = queries.dropped_duplicates(ledger, datasets)
    return [
        quality_flag(
            row.dataset,
            row.ticker,
            None,
            "duplicates_dropped",
            row.id,
            f"{row.duplicates} bar(s) arrived twice with one timestamp when {row.period} was fetched "
            "(the first was kept)",
            row.duplicates,
        )
        for row in rows
    ]

"""One day unit: its flat file read and staged.

The object is streamed, decompressed, to a temporary file and scanned lazily: only the
universe's rows are collected (a day of the whole market is never in memory), converted
to the stored bar schema (`window_start` nanoseconds -> the stored milliseconds, vwap
null, otc false), sorted by ticker then time (stable: a repeated row stays next to its
first, for the ticker unit to drop and count, as the REST route does) and written
atomically as the day unit's file, in small row groups so a run of tickers is a few of
them. The read (key, ETag, size, rows) is recorded before the unit settles.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from functools import partial
from pathlib import Path

import polars as pl

from polyledger.bars import BAR_SCHEMA
from polyledger.datasets.flat_days import ROUTES, object_key
from polyledger.errors import PermanentError, ProtocolError, one_line
from polyledger.fetch.units import UnitJob, UnitOutcome, _logged
from polyledger.flatfiles import publication
from polyledger.flatfiles.job import FlatJob, period_of, universe_hash
from polyledger.ledger import AttemptRecord, ClaimedUnit, FetchedUnit
from polyledger.periods import et_midnight_ms

COLUMNS = {
    "ticker": pl.String,
    "volume": pl.Float64,
    "open": pl.Float64,
    "close": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "window_start": pl.Int64,
    "transactions": pl.Int64,
}
# what every row of the universe's must have (transactions may be empty, as `n` in a page)
REQUIRED = ("window_start", "open", "high", "low", "close", "volume")
PRICED = REQUIRED[1:]  # floats: finite too
STAGED_ROW_GROUP = 16_384  # rows: about 40 tickers of a busy minute day per group
TARGET_OF = {day: target for target, day in ROUTES.items()}  # day dataset -> the units it feeds


def read_day(path: Path, tickers: frozenset[str], day: dt.date) -> tuple[pl.DataFrame, int]:
    """The rows of `tickers` in the day's CSV at `path` in the stored bar schema, sorted by
    ticker and time; and how many rows the whole file has."""
    # lossy: a byte that is not UTF-8 in another symbol's row (never stored) must not
    # refuse the day; universe tickers are ASCII (symbols.TICKER_RE), never changed by it
    scan = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
    wanted = pl.col("ticker").is_in(sorted(tickers))
    try:
        missing = set(COLUMNS) - set(scan.collect_schema().names())
        if missing:
            raise ProtocolError(
                f"flat file of {day} lacks {', '.join(sorted(missing))}", error_class="bad_shape"
            )
        total = int(scan.select(pl.len()).collect().item())
        if not total:  # a trading day's file holds the whole market: none of it is a defect
            raise ProtocolError(
                f"the flat file of {day} has no rows (a trading day's file holds the whole market): "
                "not taken as a day none of the universe traded",
                error_class="bad_shape",
            )
        try:
            # parsed as typed (a third less CPU than text, then cast: the whole market is
            # parsed to keep a few thousand symbols)
            typed = pl.scan_csv(path, infer_schema=False, schema_overrides=COLUMNS, encoding="utf8-lossy")
            rows = typed.select(list(COLUMNS)).filter(wanted).collect()
        except pl.exceptions.PolarsError:
            # a value that does not parse, somewhere: read as text, filtered, then typed. In
            # another symbol's row (never stored) it must not refuse the day; in one of the
            # universe's it is bad_shape
            text = scan.select(list(COLUMNS)).filter(wanted).collect()
            rows = text.cast(COLUMNS, strict=True)  # type: ignore[arg-type]
    except pl.exceptions.PolarsError as exc:
        raise ProtocolError(
            f"the flat file of {day} cannot be read as the documented CSV: {one_line(exc, 160)}",
            error_class="bad_shape",
        ) from None
    empty = [name for name in REQUIRED if rows.get_column(name).null_count()]
    if empty:  # as for the API's pages: a bar without its time or prices is never stored
        raise ProtocolError(
            f"the flat file of {day} has bars without {', '.join(empty)}", error_class="bad_shape"
        )
    # NaN or inf parse as numbers but are no price or volume: refused as an empty one is
    unreal = [name for name in PRICED if not rows.get_column(name).is_finite().all()]
    if unreal:
        raise ProtocolError(
            f"the flat file of {day} has bars whose {', '.join(unreal)} is not a finite number",
            error_class="bad_shape",
        )
    start, end = et_midnight_ms(day) * 1_000_000, et_midnight_ms(day + dt.timedelta(days=1)) * 1_000_000
    stray = int(((rows.get_column("window_start") < start) | (rows.get_column("window_start") >= end)).sum())
    if stray:  # never stage another day's bars under this date
        raise ProtocolError(
            f"{stray} rows of the flat file of {day} are not on {day}", error_class="out_of_range"
        )
    staged = rows.select(
        pl.col("ticker"),
        pl.lit(None, dtype=pl.String).alias("security_id"),
        (pl.col("window_start") // 1_000_000)
        .cast(pl.Datetime("ms"))
        .dt.replace_time_zone("UTC")
        .alias("timestamp"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit(None, dtype=pl.Float64).alias("vwap"),  # flat files have none
        "transactions",
        pl.lit(False).alias("otc"),
    ).cast(BAR_SCHEMA)  # type: ignore[arg-type]
    return staged.sort("ticker", "timestamp", maintain_order=True), total


def stage_day(unit: ClaimedUnit, job: UnitJob, flat: FlatJob) -> UnitOutcome:
    """Read, stage and settle one day unit (errors are the caller's to settle)."""
    day = unit.period_start
    target = TARGET_OF[unit.dataset]
    tickers = flat.tickers(job.ledger, target, period_of(target, day))
    key = object_key(unit.dataset, day)
    with tempfile.TemporaryDirectory(prefix="polyledger-day-", dir=flat.config.workdir) as folder:
        try:
            found = flat.source.fetch_day(key, Path(folder) / "day.csv")
        except PermanentError as exc:
            if exc.error_class == "missing_file" and publication.not_published_yet(day, publication.now()):
                expected = publication.expected_at(day)
                raise PermanentError(
                    f"the flat file of {day} is not published yet (usually about "
                    f"{expected:%H:%M} US/Eastern on {expected:%Y-%m-%d}): a later run reads it",
                    error_class="not_published",
                ) from None
            raise
        staged, total = read_day(Path(folder) / "day.csv", tickers, day)
    if not job.ledger.record_flat_file(unit, key, found.etag, found.size, total, universe_hash(tickers)):
        return _logged(unit, UnitOutcome("lost", 0, 1))  # another read holds the unit now
    stored = None
    ours = partial(job.ledger.still_holds, unit)
    if staged.height:
        stored = job.store.write_unit(
            unit.dataset,
            unit.ticker,
            day,
            staged,
            adjusted=False,
            still_ours=ours,
            row_group_size=STAGED_ROW_GROUP,
            compression="lz4",  # kept only until its period settles: cheaper to write and read
        )
    elif unit.previous_file:  # read before for other tickers, none of today's trade in it
        # deleted, not kept aside: a staged day is a temporary copy of the provider's file
        # (pruned once its periods settle), which stays in the bucket and is read from there
        # again whenever a month needs it; the months built from it are kept aside
        job.store.withdraw_unit(unit.previous_file, still_ours=ours, keep=False)
    attempt = AttemptRecord(requests=1, bytes=found.size, bars=staged.height)
    fetched = FetchedUnit(unit, attempt, stored, source="flatfiles")
    (ours,) = job.ledger.settle_fetched([fetched], False, job.run_id)
    state = ("done" if stored else "empty_confirmed") if ours else "lost"
    return _logged(unit, UnitOutcome(state, staged.height if ours else 0, 1))

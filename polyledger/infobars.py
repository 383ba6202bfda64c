"""Information-driven bars (López de Prado, *Advances in Financial Machine Learning*, ch. 2)
built from minute bars: a bar closes when enough dollars, shares or trades have gone by.

Definitions (docs/research.md):

- A minute bar's measure: dollar bars `vwap * volume` (`close * volume` where vwap is
  null), volume bars `volume`, tick bars `transactions` (null counts 0).
- Bars are built per security, in time order, across sessions and gaps: a bar may span
  days. Each bar has a threshold, fixed when it opens (the threshold of its first minute's
  session). It closes on the first minute at which its running sum of the measure reaches
  or crosses the threshold (sums taken as differences of float64 cumulative sums); the
  next minute opens the next bar. A minute is never split: one minute above the threshold
  is a bar of its own.
- The minutes after the last closed bar are an unfinished bar: left out, unless
  `keep_partial=True` (then the last row, `complete` false).
- `threshold=X` fixes it. `bars_per_day=K` instead sets each session's threshold to the
  mean of the measure's daily totals over the previous `window` sessions (of this
  security, with bars; fewer at the start) divided by K: only past sessions, no look-ahead.
  The first session has no past: its minutes are warm-up and make no bar. A session whose
  past sessions measured nothing sets no threshold: the last one set holds (a bar open
  across it keeps its minutes); before any was set, its minutes are warm-up too.
- Columns: ticker (of the bar's last minute), security_id, start (first minute's start),
  end (last minute's end, exclusive), open, high, low, close, volume, dollar_volume,
  vwap (dollar_volume / volume), transactions, minutes (minute bars in it), threshold,
  complete.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from polyledger.errors import InputError
from polyledger.periods import ET

if TYPE_CHECKING:
    from polyledger.download import Download

MEASURES = ("dollar", "volume", "tick")
MINUTE = dt.timedelta(minutes=1)
BAR_COLUMNS = {
    "ticker": pl.String(),
    "security_id": pl.String(),
    "start": pl.Datetime("ms", "UTC"),
    "end": pl.Datetime("ms", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "dollar_volume": pl.Float64(),
    "vwap": pl.Float64(),
    "transactions": pl.Int64(),
    "minutes": pl.UInt32(),
    "threshold": pl.Float64(),
    "complete": pl.Boolean(),
}


def check_threshold(
    threshold: float | None, bars_per_day: float | None, window: int
) -> tuple[float | None, float | None]:
    """`threshold` and `bars_per_day` as floats (a Decimal from a database, a numpy scalar
    or 0-d array, a Fraction: anything `float()` takes), or a one-line InputError."""
    if (threshold is None) == (bars_per_day is None):
        raise InputError("give either threshold= (fixed) or bars_per_day= (from past daily totals)")
    # a float or a string fails deep in the numpy walk; a bool is an int to Python
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
        raise InputError(f"window must be at least 1 session, a whole number, not {window!r}")
    return _positive_number("threshold", threshold), _positive_number("bars_per_day", bars_per_day)


def check_keep_partial(keep_partial: object) -> None:
    """A truthy string ('no') would keep the unfinished bar: True or False only."""
    if not isinstance(keep_partial, (bool, np.bool_)):
        raise InputError(f"keep_partial must be True or False, not {keep_partial!r}")


def _positive_number(name: str, value: object) -> float | None:
    """None, or `value` as a positive finite float: inf would close no bar (bars_per_day=inf:
    thresholds of 0, "measured nothing"), an empty frame as if nothing traded; True is 1 to
    Python and "5" no number."""
    if value is None:
        return None
    try:
        number = float(value) if not isinstance(value, (bool, str, bytes)) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < math.inf:
        raise InputError(f"{name} must be positive and finite (a number), not {value!r}")
    return number


def measure_of(kind: str) -> pl.Expr:
    if kind == "dollar":
        return pl.coalesce(pl.col("vwap"), pl.col("close")) * pl.col("volume")
    if kind == "volume":
        return pl.col("volume").cast(pl.Float64)
    if kind == "tick":
        return pl.col("transactions").fill_null(0).cast(pl.Float64)
    raise InputError(f"unknown bar measure {kind!r}: choose one of {', '.join(MEASURES)}")


def information_bars(
    minutes: pl.DataFrame,
    kind: str,
    *,
    threshold: float | None = None,
    bars_per_day: float | None = None,
    window: int = 20,
    keep_partial: bool = False,
) -> pl.DataFrame:
    """The bars of one security's minute bars (in time order): see the module's doc."""
    threshold, bars_per_day = check_threshold(threshold, bars_per_day, window)
    check_keep_partial(keep_partial)
    frame = minutes.with_columns(_measure=measure_of(kind), _dollars=measure_of("dollar"))
    if threshold is not None:
        frame = frame.with_columns(_threshold=pl.lit(threshold))
    else:
        session = frame["timestamp"].dt.convert_time_zone(str(ET)).dt.date().to_physical().to_numpy()
        thresholds = _past_thresholds(frame["_measure"].to_numpy(), session, window, bars_per_day)  # type: ignore[arg-type]
        # NaN: no threshold of the session's own; the last one set holds (a bar open across
        # such a session keeps its minutes), and the minutes before any was set are warm-up
        held = pl.Series(thresholds).fill_nan(None).forward_fill()
        frame = frame.with_columns(_threshold=held).filter(pl.col("_threshold").is_not_null())
    if frame.height == 0:
        return pl.DataFrame(schema=BAR_COLUMNS)
    ids, complete = _bar_ids(frame["_measure"].to_numpy(), frame["_threshold"].to_numpy())
    frame = frame.with_columns(_bar=pl.Series(ids))
    if not keep_partial:
        frame = frame.filter(pl.col("_bar") < complete)
    bars = frame.group_by("_bar", maintain_order=True).agg(
        pl.col("ticker").last(),
        pl.col("security_id").first(),
        pl.col("timestamp").first().alias("start"),
        (pl.col("timestamp").last() + MINUTE).alias("end"),
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
        pl.col("volume").sum(),
        pl.col("_dollars").sum().alias("dollar_volume"),
        pl.col("transactions").sum(),
        pl.len().alias("minutes"),
        pl.col("_threshold").first().alias("threshold"),
    )
    bars = bars.with_columns(
        vwap=pl.col("dollar_volume") / pl.col("volume"), complete=pl.col("_bar") < complete
    )
    return bars.select(list(BAR_COLUMNS)).cast(BAR_COLUMNS)


def _past_thresholds(
    measure: np.ndarray, session: np.ndarray, window: int, bars_per_day: float
) -> np.ndarray:
    """Each minute's threshold: the mean daily total of the `window` sessions before its
    own (fewer at the start) / bars_per_day; NaN in the first session (warm-up) and where
    those sessions total nothing. Minutes are in time order, so each session's minutes are
    contiguous."""
    if measure.size == 0:
        return measure.astype(np.float64)
    starts = np.flatnonzero(np.diff(session) != 0) + 1
    starts = np.concatenate(([0], starts))
    lengths = np.diff(np.concatenate((starts, [measure.size])))
    totals = np.concatenate(([0.0], np.cumsum(np.add.reduceat(measure, starts))))
    k = np.arange(starts.size)  # the session's number; sessions k - n .. k - 1 before it
    count = np.minimum(k, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_session = (totals[k] - totals[k - count]) / count / bars_per_day  # 0 / 0: NaN for the first
    # sessions that measured nothing (no trades counted) set no threshold: a bar of 0 would
    # close on every minute, each "complete" (`information_bars` holds the last one set)
    per_session[per_session <= 0] = np.nan
    return np.repeat(per_session, lengths)


def _bar_ids(measure: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, int]:
    """Each minute's bar number, and how many bars closed (the rest is the unfinished one).

    For every minute i, the minute j a bar opened at i would close on is found at once
    (binary search on the cumulative sum, then nudged so that the running sum
    C[j] - C[i-1] >= threshold is what decides); then a walk from the first minute follows
    i -> j + 1, one step per bar."""
    n = measure.size
    if np.any(measure < 0) or np.any(np.isnan(measure)):
        raise InputError("a bar measure (volume, dollars or transactions) is negative or NaN")
    cumulative = np.cumsum(measure)
    base = np.concatenate(([0.0], cumulative[:-1]))
    opened = np.arange(n)
    close = np.maximum(np.searchsorted(cumulative, base + thresholds, side="left"), opened)
    # float rounding: the sum short of the threshold at j: on to the next minute that adds
    # to it; or reached one minute earlier already: back to the first minute of that sum.
    # Minutes that measure nothing are jumped over at once (a pass per minute of a long run
    # of them cost the square of its length)
    while True:
        short = np.flatnonzero((close < n) & (cumulative[np.minimum(close, n - 1)] - base < thresholds))
        if not short.size:
            break
        close[short] = np.searchsorted(cumulative, cumulative[close[short]], side="right")
    while True:
        early = np.flatnonzero((close > opened) & (cumulative[np.maximum(close - 1, 0)] - base >= thresholds))
        if not early.size:
            break
        reached = np.searchsorted(cumulative, cumulative[close[early] - 1], side="left")
        close[early] = np.maximum(reached, opened[early])
    ends = []
    i = 0
    while i < n:
        j = int(close[i])
        if j >= n:
            break
        ends.append(j)
        i = j + 1
    bounds = np.array([-1, *ends], dtype=np.int64)
    lengths = [*np.diff(bounds), n - 1 - bounds[-1]]  # the last: the unfinished bar's minutes
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths), len(ends)


def build(
    download: Download,
    kind: str,
    tickers: Sequence[str] | str | None,
    securities: Sequence[str] | str | None,
    *,
    threshold: float | None,
    bars_per_day: float | None,
    window: int,
    start: dt.date | str | None,
    end: dt.date | str | None,
    adjust: str | None,
    keep_partial: bool,
) -> pl.DataFrame:
    """Bars of each security of `tickers` (each ticker read alone), or of each of
    `securities` across its symbols: one ticker's (security's) minute bars in memory at a time."""
    threshold, bars_per_day = check_threshold(threshold, bars_per_day, window)
    check_keep_partial(keep_partial)
    measure_of(kind)
    if (tickers is None) == (securities is None):
        raise InputError("give either tickers or securities")
    read = dict(start=start, end=end, adjust=adjust)
    # every argument and name checked before a bar is read (a list of none too): a misspelt
    # ticker at the end of a universe is not found after hours of building the others
    download.bars("minute", tickers=[], **read)  # type: ignore[arg-type]
    if tickers is not None:
        names = _names(tickers, "tickers")
        download._check_tickers("minute", names)
        reads = (download.bars("minute", tickers=[name], **read) for name in names)  # type: ignore[arg-type]
    else:
        names = _names(securities, "securities")
        for name in names:
            download._check_security("minute", name)
        reads = (download.bars("minute", security=name, **read) for name in names)  # type: ignore[arg-type]
    out = [
        information_bars(
            stream,
            kind,
            threshold=threshold,
            bars_per_day=bars_per_day,
            window=window,
            keep_partial=keep_partial,
        )
        for stream in streams(minutes.collect() for minutes in reads)
    ]
    return pl.concat(out) if out else pl.DataFrame(schema=BAR_COLUMNS)


def _names(given: Sequence[str] | str | None, what: str) -> list[str]:
    """`tickers` or `securities` as a list, each name once: a universe file has a row per
    listing (a reused symbol twice) and `listings()` a security per listing (a renamed
    company twice); read twice, a name's bars would come twice. One name given bare, or any
    iterable of strings; anything else is a one-line InputError."""
    if isinstance(given, str):
        return [given]
    try:
        names = list(given)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(f"invalid {what} {type(given).__name__}: give a name or a list of names") from None
    odd = [name for name in names if not isinstance(name, str)]
    if odd:
        raise InputError(f"invalid {what} item {odd[0]!r} ({type(odd[0]).__name__}): names are strings")
    return list(dict.fromkeys(str(name) for name in names))


def streams(read_minutes: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """Each security's minute bars from per-ticker reads: bars inside no listing (null
    security_id) belong to no company and are left out."""
    for minutes in read_minutes:
        known = minutes.filter(pl.col("security_id").is_not_null())
        yield from known.partition_by("security_id", maintain_order=True)

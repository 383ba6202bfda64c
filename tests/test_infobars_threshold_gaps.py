"""Information bars across a session that sets no threshold of its own (found by a review):
a bar open across it keeps its minutes."""

from __future__ import annotations

import polars as pl
from test_infobars import et, minutes

from polyledger.infobars import information_bars


def test_a_bar_open_across_a_session_without_threshold_keeps_that_sessions_minutes():
    """Scenario: tick bars with bars_per_day=1, window=1. Monday counts 10 trades (warm-up);
    Tuesday's trade counts are missing (null, read as 0), so a bar opens on Tuesday with
    threshold 10 and stays open; Wednesday's threshold (Tuesday's total, 0) is undefined,
    so Wednesday's minutes are dropped before the bars are cut; Thursday's are kept.

    What goes wrong: the bar opened on Tuesday closes on Thursday and is reported
    `complete`, with start on Tuesday and end on Thursday, yet its aggregates leave out
    every minute of Wednesday, which lies inside [start, end): its high is 10 though
    Wednesday traded at 99, its volume 400 though 15,954 shares traded in it, and its 10
    trades reach the threshold only because Wednesday's 8 were not counted. A researcher
    gets a bar whose OHLCV silently misses the market inside its own interval.
    `infobars.information_bars` filters out the minutes of a threshold-less session
    (`.filter(pl.col("_threshold").is_not_nan())`) even when a bar is already open.
    Failed before the last threshold set was held through such sessions."""
    rows = [(et("2024-03-04", f"10:0{k}"), 10.0, 10.0, 10.0, 10.0, 100.0, 10.0, 5) for k in range(2)]
    rows += [(et("2024-03-05", f"10:0{k}"), 10.0, 10.0, 10.0, 10.0, 100.0, 10.0, None) for k in range(2)]
    rows += [(et("2024-03-06", f"10:0{k}"), 10.0, 99.0, 1.0, 10.0, 7777.0, 10.0, 4) for k in range(2)]
    rows += [(et("2024-03-07", f"10:0{k}"), 10.0, 10.0, 10.0, 10.0, 100.0, 10.0, 5) for k in range(2)]
    frame = minutes(rows)
    bars = information_bars(frame, "tick", bars_per_day=1, window=1, keep_partial=True)
    assert bars.height > 0
    for start, end, high, low, volume, count in bars.select(
        "start", "end", "high", "low", "volume", "minutes"
    ).iter_rows():
        inside = frame.filter((pl.col("timestamp") >= start) & (pl.col("timestamp") < end))
        # every minute bar inside a bar's [start, end) is part of it
        assert (count, volume, high, low) == (
            inside.height,
            inside["volume"].sum(),
            inside["high"].max(),
            inside["low"].min(),
        ), f"bar {start} .. {end} leaves out minutes inside it"

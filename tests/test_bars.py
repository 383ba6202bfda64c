"""Shaping decoded pages into stored bars (`polyledger/bars.py`): what the columns hold
where the API leaves a field out."""

from __future__ import annotations

import datetime as dt

import polars as pl

from polyledger.bars import BAR_SCHEMA, bars_for_unit, symbol_bars
from polyledger.periods import et_midnight_ms
from polyledger.polygon.aggs import RAW_BAR
from polyledger.polygon.grouped import GROUPED_BAR

D = dt.date
TEN_AM = et_midnight_ms(D(2024, 3, 8)) + 10 * 3_600_000


RANGE_BAR = dict(RAW_BAR.to_schema())


def raw_bars(otc: list[bool | None], schema: dict = RANGE_BAR) -> pl.DataFrame:  # noqa: B006 - never changed
    """Bars a minute apart as a page decodes them: `otc` null where the API left it out."""
    rows = len(otc)
    columns = {
        "t": [TEN_AM + i * 60_000 for i in range(rows)],
        **{name: [1.0] * rows for name in ("o", "h", "l", "c", "v", "vw")},
        "n": [3] * rows,
        "otc": otc,
    }
    if "T" in schema:
        columns["T"] = ["B", "A", "A", "C"][:rows]
    return pl.DataFrame(columns, schema=schema)


def test_otc_is_false_where_the_api_left_it_out_so_not_otc_selects_regular_bars():
    """The API sends `otc` only when true: stored null, `~pl.col("otc")` would select none
    of the regular bars (a null stays null under `~`, and a filter drops it)."""
    bars = bars_for_unit(raw_bars([None, True, None, None]), "AAPL", D(2024, 3, 1), D(2024, 3, 31))
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.get_column("otc").to_list() == [False, True, False, False]
    assert bars.filter(~pl.col("otc")).height == 3 and bars.filter(pl.col("otc")).height == 1


def test_grouped_daily_otc_is_false_where_the_api_left_it_out_too():
    bars, repeats = symbol_bars(raw_bars([None, True, None, None], schema=GROUPED_BAR))
    assert repeats == 0 and bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.select("ticker", "otc").rows() == [("A", True), ("A", False), ("B", False), ("C", False)]
    assert bars.filter(~pl.col("otc")).get_column("ticker").to_list() == ["A", "B", "C"]

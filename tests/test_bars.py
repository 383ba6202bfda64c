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


# --- split_by_unit and bars_outside against the plain definition ---------------------------
# (they compare epoch ms with ET midnights, skip sorting sorted bars and drop repeats as
# neighbours; the definition converts every bar to its ET session date)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from polyledger.bars import bars_outside, split_by_unit  # noqa: E402
from polyledger.periods import ET  # noqa: E402

# months around both 2024 DST changes, and the midnights where a bar changes unit
MONTHS = [(D(2024, m, 1), D(2024, m + 1, 1) - dt.timedelta(days=1)) for m in (2, 3, 4, 10)]
MONTHS.append((D(2024, 11, 1), D(2024, 11, 30)))
EDGES = [et_midnight_ms(start) for start, _ in MONTHS] + [et_midnight_ms(D(2024, 12, 1))]
near_edges = st.builds(
    lambda edge, offset: edge + offset * 60_000,
    st.sampled_from(EDGES + [et_midnight_ms(D(2024, 3, 10)), et_midnight_ms(D(2024, 11, 3))]),
    st.integers(-90, 90),
)
times = st.lists(
    st.one_of(near_edges, st.integers(EDGES[0] - 86_400_000, EDGES[-1] + 86_400_000)), max_size=60
)


def bars_at(stamps: list[int]) -> pl.DataFrame:
    """Raw bars at these instants, `o` numbering them in arrival order (which one was kept)."""
    rows = len(stamps)
    columns = {"t": stamps, "o": [float(i) for i in range(rows)]}
    columns.update({name: [1.0] * rows for name in ("h", "l", "c", "v", "vw")})
    return pl.DataFrame({**columns, "n": [1] * rows, "otc": [None] * rows}, schema=RANGE_BAR)


def session_date(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET).date()


@settings(max_examples=300, deadline=None)
@given(stamps=times, sort=st.booleans())
def test_each_unit_holds_the_bars_of_its_session_dates_first_seen_once_in_time_order(stamps, sort):
    stamps = sorted(stamps) if sort else stamps  # pages arrive sorted; a messy one may not be
    shares = split_by_unit(bars_at(stamps), "ABC", MONTHS)
    for (start, end), share in zip(MONTHS, shares, strict=True):
        firsts: dict[int, int] = {}
        for index, ms in enumerate(stamps):
            if start <= session_date(ms) <= end:
                firsts.setdefault(ms, index)
        in_unit = [ms for ms in stamps if start <= session_date(ms) <= end]
        assert share.bars.get_column("timestamp").dt.epoch("ms").to_list() == sorted(firsts)
        assert share.bars.get_column("open").to_list() == [float(firsts[ms]) for ms in sorted(firsts)]
        assert share.duplicates == len(in_unit) - len(firsts)
        assert share.bars.columns == list(BAR_SCHEMA)
        assert share.bars.get_column("security_id").null_count() == 0


@settings(max_examples=300, deadline=None)
@given(stamps=times, months=st.sampled_from(MONTHS))
def test_bars_outside_counts_the_bars_whose_session_date_is_not_asked(stamps, months):
    start, end = months
    expected = sum(not start <= session_date(ms) <= end for ms in stamps)
    assert bars_outside(bars_at(stamps), start, end) == expected

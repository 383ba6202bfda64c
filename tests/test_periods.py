import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyledger.errors import InputError
from polyledger.periods import parse_date, unit_periods

D = dt.date


def test_months_are_clipped_at_both_ends():
    periods = list(unit_periods("month", D(2024, 1, 15), D(2024, 3, 10)))
    assert periods == [
        (D(2024, 1, 15), D(2024, 1, 31)),
        (D(2024, 2, 1), D(2024, 2, 29)),
        (D(2024, 3, 1), D(2024, 3, 10)),
    ]


def test_years_are_clipped_at_both_ends():
    assert list(unit_periods("year", D(2004, 6, 1), D(2006, 2, 3))) == [
        (D(2004, 6, 1), D(2004, 12, 31)),
        (D(2005, 1, 1), D(2005, 12, 31)),
        (D(2006, 1, 1), D(2006, 2, 3)),
    ]


@given(
    st.dates(min_value=D(2000, 1, 1), max_value=D(2030, 12, 31)),
    st.integers(min_value=0, max_value=2000),
    st.sampled_from(["month", "year"]),
)
def test_periods_tile_the_range_exactly(start, days, grain):
    end = start + dt.timedelta(days=days)
    periods = list(unit_periods(grain, start, end))
    assert periods[0][0] == start and periods[-1][1] == end
    for (_a_start, a_end), (b_start, _b_end) in zip(periods, periods[1:], strict=False):
        assert b_start == a_end + dt.timedelta(days=1)
    for p_start, p_end in periods:
        assert p_start <= p_end
        assert (p_start.year, p_start.month if grain == "month" else 0) == (
            p_end.year,
            p_end.month if grain == "month" else 0,
        )


@pytest.mark.parametrize("text", ["2024-13-01", "yesterday", "2024/01/01", ""])
def test_bad_dates(text):
    with pytest.raises(InputError, match="--from"):
        parse_date(text, "--from")


def test_stored_date_reads_a_ledger_date_from_either_backend():
    """SQLite gives dates back as text (a timestamp's too), PostgreSQL and polars as dates."""
    from polyledger.periods import stored_date

    day = dt.date(2024, 2, 29)
    for value in (day, dt.datetime(2024, 2, 29, 23, 59), "2024-02-29", "2024-02-29 00:00:00.000000"):
        got = stored_date(value)
        assert got == day and type(got) is dt.date, value
    with pytest.raises(ValueError):
        stored_date("29/02/2024")

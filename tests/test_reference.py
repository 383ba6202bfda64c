"""Reference datasets (splits, dividends, ticker details): recorded real responses parse into
the stored columns, and a stale-adjustment audit finds bars fetched before a later split."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from polyledger.errors import TransientError
from polyledger.polygon.reference import decode_results
from polyledger.reference import DETAILS, DIVIDENDS, SPLITS, results_frame

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def test_recorded_splits_parse_into_the_stored_columns():
    page = decode_results(recorded("spec-examples/stocks_v1_splits.example.json"))
    frame = results_frame(page.results, SPLITS)
    assert frame.columns == list(SPLITS.schema)
    assert frame.row(0, named=True) == {
        "ticker": "AAPL",
        "execution_date": dt.date(2005, 2, 28),
        "split_from": 1.0,
        "split_to": 2.0,
        "adjustment_type": "forward_split",
        "historical_adjustment_factor": 0.017857,
        "id": "E90a77bdf742661741ed7c8fc086415f0457c2816c45899d73aaa88bdc8ff6025",
    }


def test_recorded_dividends_parse_into_the_stored_columns():
    page = decode_results(recorded("spec-examples/stocks_v1_dividends.example.json"))
    row = results_frame(page.results, DIVIDENDS).row(0, named=True)
    assert row["ex_dividend_date"] == dt.date(2025, 8, 11) and row["pay_date"] == dt.date(2025, 8, 14)
    assert row["cash_amount"] == 0.26 and row["frequency"] == 4 and row["currency"] == "USD"


def test_recorded_ticker_details_parse_one_object_as_one_row():
    for relative in (
        "spec-examples/v3_reference_tickers_ticker.example.json",
        "api-mocks/v3/reference/tickers/AAPL.json",
    ):
        page = decode_results(recorded(relative))
        frame = results_frame(page.results, DETAILS)
        assert frame.height == 1
        row = frame.row(0, named=True)
        assert row["ticker"] == "AAPL" and row["list_date"] == dt.date(1980, 12, 12)
        assert row["market_cap"] > 1e11 and row["cik"] == "0000320193"


def test_recorded_tickers_list_pages_carry_their_next_url():
    first = decode_results(recorded("api-mocks/v3/reference/tickers.json"))
    assert first.next_url and "cursor=" in first.next_url
    assert [row["ticker"] for row in first.results][:1] == ["A"]
    assert all(row["type"] and row["primary_exchange"] for row in first.results)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"status": "ERROR", "error": "x"}', b'{"results": [1]}']
)
def test_undecodable_reference_bodies_are_transient(body):
    with pytest.raises(TransientError):
        decode_results(body)

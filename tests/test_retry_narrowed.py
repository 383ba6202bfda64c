"""`retry` queues what it names and nothing else: `retry --stale --ticker T` T's stale
flat-file units and only the replaced day files inside their months, never another
ticker's (a whole market's day file read again for nothing), the other tickers' stale
units staying stale; `retry --class http_5xx` every server error (found by reviews)."""

from __future__ import annotations

import datetime as dt

import pytest

from polyledger.ledger import AttemptRecord, Ledger, PlannedUnit, StoredFile

D = dt.date


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def test_retry_stale_of_one_ticker_does_not_queue_other_tickers_day_files(ledger):
    """commands.md (retry): `polyledger retry --stale [--ticker T]` queues the units read
    from a flat file replaced since, "with that day file"; `--ticker` narrows it. AAPL's
    January unit and MSFT's February unit were built from day files replaced since.
    `retry --stale --ticker AAPL` must queue AAPL's unit and January's day file; it also
    queues February's day file (a whole market's minute file read again, for a month
    AAPL has no stale unit in) and counts it in "N stale units are pending again": the
    changed days are queued with no regard to the tickers
    (polyledger/ledger/flat_file_table.py:236-237)."""
    from polyledger.datasets import MARKET
    from polyledger.datasets.flat_days import ROUTES
    from polyledger.ledger import FetchedUnit
    from polyledger.requeue import retry_stale

    day_dataset = ROUTES["minute"]
    jan, feb = D(2024, 1, 3), D(2024, 2, 5)
    for day in (jan, feb):  # the day files, read
        ledger.add_units([PlannedUnit(day_dataset, MARKET, day, day, period_name=day.isoformat())])
        (unit,) = ledger.claim("w", 60)
        assert ledger.record_flat_file(
            unit, f"us_stocks_sip/minute_aggs_v1/{day}.csv.gz", "etag-1", 10, 5, "h"
        )
        stored = StoredFile(f"{day_dataset}/{day}.parquet", 5, "x", 1)
        ledger.settle_fetched(
            [FetchedUnit(unit, AttemptRecord(requests=1), stored, source="flatfiles")], False
        )
    for ticker, (start, end) in (
        ("AAPL", (D(2024, 1, 1), D(2024, 1, 31))),
        ("MSFT", (D(2024, 2, 1), D(2024, 2, 29))),
    ):
        ledger.add_units([PlannedUnit("minute", ticker, start, end)])
        (unit,) = ledger.claim("w", 60)
        stored = StoredFile(f"minute/{ticker}/{start}.parquet", 5, "x", 1)
        ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(), stored, source="flatfiles")], False)
    days = {
        r.period: r.id for r in ledger.query(f"SELECT id, period FROM units WHERE dataset = '{day_dataset}'")
    }
    ledger.note_seen_etags(
        {days[jan.isoformat()]: "etag-2", days[feb.isoformat()]: "etag-2"}
    )  # both replaced
    assert {r.ticker for r in ledger.stale_flat("minute", day_dataset)} == {"AAPL", "MSFT"}
    queued = retry_stale(ledger, ["AAPL"])
    pending = {
        (r.dataset, r.period)
        for r in ledger.query("SELECT dataset, period FROM units WHERE state = 'pending'")
    }
    assert pending == {("minute", "2024-01"), (day_dataset, jan.isoformat())}
    assert queued == 2
    # MSFT's February stays stale, its day file's change on record: `retry --stale` gets it
    assert {r.ticker for r in ledger.stale_flat("minute", day_dataset)} == {"MSFT"}
    assert retry_stale(ledger) == 2


def test_retry_class_http_5xx_queues_every_server_error_and_only_those(ledger):
    """docs/ledger.md names `http_5xx` among the error classes; units are stored with the
    status itself (`http_500`, `http_503`): `retry --class http_5xx` queues them all, and
    no other class (found by a new user's review: it queued nothing and said 0)."""
    from polyledger.errors import TransientError
    from polyledger.requeue import retry_failed

    classes = ["http_500", "http_503", "http_429", "timeout"]
    ledger.add_units([PlannedUnit("minute", t, D(2024, 1, 1), D(2024, 1, 31)) for t in ("A", "B", "C", "D")])
    for unit, error_class in zip(ledger.claim("w", 60, limit=4), classes, strict=True):
        failure = TransientError("server error", error_class=error_class)
        ledger.settle_failed(unit, AttemptRecord(error_class=failure.error_class, error=str(failure)))
    assert retry_failed(ledger, "http_5xx") == 2
    pending = {r.ticker for r in ledger.query("SELECT ticker FROM units WHERE state = 'pending'")}
    assert pending == {"A", "B"}

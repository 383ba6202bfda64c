"""`retry` queues what it names and nothing else: `retry --stale --ticker T` T's stale
flat-file units and only the replaced day files inside their months, never another
ticker's (a whole market's day file read again for nothing), the other tickers' stale
units staying stale; `retry --class http_5xx` every server error (found by reviews)."""

from __future__ import annotations

import datetime as dt

import pytest
from support import at_stock_sqlite_limit

from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit, StoredFile
from polyledger.requeue import retry_failed, retry_flagged, retry_stale

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


# a universe of every US listing: more tickers than a stock SQLite binds at once (32766)
UNIVERSE = [f"T{i:05d}" for i in range(40_000)]
HOW = ("failed", "flagged", "stale")
INSIDE = dict(zip(HOW, UNIVERSE, strict=False))  # T00000 failed, T00001 flagged, T00002 stale
OUTSIDE = {"failed": "ZFAIL", "flagged": "ZFLAG", "stale": "ZSTALE"}  # in no list given
JANUARY = (D(2024, 1, 1), D(2024, 1, 31))
FETCHED_BEFORE_SPLIT = dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc)


def _settled(ledger: Ledger, ticker: str, how: str) -> int:
    """`ticker`'s January unit planned, claimed and settled `how`: failed, flagged (done,
    with a quality flag), or stale (done adjusted, before a split of March). Its id."""
    ledger.add_units([PlannedUnit("minute", ticker, *JANUARY)])
    (unit,) = ledger.claim("w", 60)
    if how == "failed":
        ledger.settle_failed(unit, AttemptRecord(error_class="http_500", error="server error"))
        return unit.id
    stored = StoredFile(f"minute/{ticker}/2024-01.parquet", 5, "x", 1)
    clock, ledger.clock = ledger.clock, (lambda: FETCHED_BEFORE_SPLIT)
    ledger.settle_fetched([FetchedUnit(unit, AttemptRecord(), stored)], how == "stale")
    ledger.clock = clock
    if how == "stale":
        ledger.replace_splits(ticker, [("2024-03-01", 1.0, 2.0)])
    if how == "flagged":
        flag = {
            "dataset": "minute",
            "ticker": ticker,
            "check_name": "ohlc",
            "detail": "x",
            "unit_id": unit.id,
        }
        flags = [*ledger.query("SELECT dataset, ticker, check_name, detail, unit_id FROM quality_flags")]
        ledger.replace_quality_flags(["minute"], [*(row._asdict() for row in flags), flag])
    return unit.id


@pytest.fixture
def universe_ledger(tmp_path):
    """The universe's January planned (pending); of INSIDE's and of OUTSIDE's tickers one
    unit settled each way; SQLite at a stock build's bound-variable limit."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        for how in HOW:
            for ticker in (INSIDE[how], OUTSIDE[how]):
                _settled(ledger, ticker, how)
        ledger.add_units(PlannedUnit("minute", ticker, *JANUARY) for ticker in UNIVERSE)
        at_stock_sqlite_limit(ledger)
        yield ledger


def _queued_of(ledger: Ledger, how: str) -> list[str]:
    """Which of `how`'s two tickers (INSIDE's, OUTSIDE's) have their January pending now."""
    rows = ledger.query(
        "SELECT ticker FROM units WHERE state = 'pending' AND ticker IN (:inside, :outside)",
        {"inside": INSIDE[how], "outside": OUTSIDE[how]},
    )
    return [row.ticker for row in rows]


@pytest.mark.parametrize(
    ("how", "retry"),
    [
        ("failed", lambda ledger: retry_failed(ledger, "all", UNIVERSE, ["minute"])),
        ("flagged", lambda ledger: retry_flagged(ledger, (), UNIVERSE, ["minute"])),
        ("stale", lambda ledger: retry_stale(ledger, UNIVERSE)),
    ],
)
def test_retry_of_a_universes_tickers_queues_theirs_past_sqlites_bound_variables(universe_ledger, how, retry):
    """`retry` narrowed to a universe's 40,000 tickers (`--ticker` each, or from Python)
    put them in one IN list: the check of unknown tickers and the reset each stopped with
    'too many SQL variables' on a stock SQLite (32766). They are asked and reset in slices,
    in one transaction: the universe's unit queued, OUTSIDE's left as it was."""
    assert retry(universe_ledger) == 1
    assert _queued_of(universe_ledger, how) == [INSIDE[how]]

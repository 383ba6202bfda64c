"""Claims and settles on a real SQLite ledger, column by column: what a claim takes and in
which order, what its lease says, and what each settle writes to the unit and its history."""

from __future__ import annotations

import datetime as dt

import pytest
from support import LedgerClock

from polyledger.errors import LeaseLost
from polyledger.ledger import AttemptRecord, Ledger, PlannedUnit, StoredFile, in_list, iso

D = dt.date
START = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock() -> LedgerClock:
    return LedgerClock(START)


@pytest.fixture
def ledger(tmp_path, clock):
    with Ledger(tmp_path / "ledger.db", clock=clock) as opened:
        yield opened


def month(ticker: str, year: int, number: int, dataset: str = "minute") -> PlannedUnit:
    following = D(year + number // 12, number % 12 + 1, 1)
    return PlannedUnit(dataset, ticker, D(year, number, 1), following - dt.timedelta(days=1))


def unit_row(ledger: Ledger, unit_id: int):  # type: ignore[no-untyped-def]
    return ledger.query("SELECT * FROM units WHERE id = :id", {"id": unit_id})[0]


def attempts_of(ledger: Ledger, unit_id: int) -> list:
    return ledger.query("SELECT * FROM unit_attempts WHERE unit_id = :id ORDER BY id", {"id": unit_id})


def test_iso_is_fixed_width_utc_to_the_millisecond():
    east = dt.timezone(dt.timedelta(hours=2))
    assert iso(dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=east)) == "2026-01-01T10:00:00.123Z"
    assert iso(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) == "2026-01-01T00:00:00.000Z"


def test_iso_is_utc_whatever_the_local_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert iso(dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)) == "2026-01-01T12:00:00.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_claimed_rows_are_read_by_their_lowercase_names_as_postgresql_returns_them():
    from polyledger.ledger import ClaimedUnit, pg

    # pg.Row, unlike sqlite3.Row, knows each column by its exact name only
    row_class = pg._row_class(
        ("id", "dataset", "ticker", "period_start", "period_end", "attempts", "file_path")
    )
    earlier = "minute/ticker=B/year=2024/month=02/part.parquet"
    rows = [
        tuple.__new__(row_class, (9, "minute", "B", "2024-02-01", "2024-02-29", 2, earlier)),
        tuple.__new__(row_class, (3, "minute", "A", "2024-01-01", "2024-01-31", 1, None)),
    ]
    assert Ledger._claimed(rows, "tok", START) == [
        ClaimedUnit(3, "minute", "A", D(2024, 1, 1), D(2024, 1, 31), 1, "tok", iso(START)),
        ClaimedUnit(9, "minute", "B", D(2024, 2, 1), D(2024, 2, 29), 2, "tok", iso(START), earlier),
    ]


def test_in_list_names_one_parameter_per_value():
    assert in_list("dataset", ["day", "minute"], "_ds") == (
        "dataset IN (:_ds0, :_ds1)",
        {"_ds0": "day", "_ds1": "minute"},
    )


def test_a_claim_writes_owner_token_lease_and_attempt(ledger, clock):
    ledger.add_units([month("AAPL", 2024, 1)])
    clock.advance(5)
    (unit,) = ledger.claim("worker-1", 90)
    row = unit_row(ledger, unit.id)
    assert (row.state, row.attempts, row.lease_owner, row.lease_token) == (
        "running",
        1,
        "worker-1",
        unit.lease_token,
    )
    assert row.lease_expires_at == iso(START + dt.timedelta(seconds=95))
    assert row.updated_at == iso(START + dt.timedelta(seconds=5))
    assert (unit.dataset, unit.ticker, unit.period_start, unit.period_end, unit.attempts) == (
        "minute",
        "AAPL",
        D(2024, 1, 1),
        D(2024, 1, 31),
        1,
    )
    assert unit.claimed_at == iso(START + dt.timedelta(seconds=5))
    assert len(unit.lease_token) == 32  # a fresh uuid4 per claim


def test_claims_take_least_tried_first_then_id_order_up_to_the_limit(ledger):
    ledger.add_units([month("A", 2024, n) for n in (1, 2, 3, 4)])
    tried = ledger.claim("w", 60, limit=1)[0]  # id 1
    ledger.requeue(tried, AttemptRecord(error="x", error_class="http_503"))
    claimed = ledger.claim("w", 60, limit=3)
    assert [u.period_start.month for u in claimed] == [2, 3, 4]  # the retried unit waits
    assert [u.attempts for u in claimed] == [1, 1, 1]
    (last,) = ledger.claim("w", 60, limit=3)
    assert (last.id, last.attempts) == (tried.id, 2)
    assert ledger.claim("w", 60, limit=3) == []


def test_tokens_differ_between_claims_and_are_shared_within_one(ledger):
    ledger.add_units([month("A", 2024, n) for n in (1, 2, 3)])
    both = ledger.claim("w", 60, limit=2)
    other = ledger.claim("w", 60, limit=1)
    assert both[0].lease_token == both[1].lease_token != other[0].lease_token


def test_claims_return_units_in_id_order(ledger):
    ledger.add_units([month("A", 2024, n) for n in (3, 1, 2)])
    assert [u.id for u in ledger.claim("w", 60, limit=3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("datasets", "expected"), [(["day"], {"day"}), (None, {"day", "minute"}), ([], {"day", "minute"})]
)
def test_a_claim_limited_to_datasets_takes_only_those(ledger, datasets, expected):
    ledger.add_units([month("A", 2024, 1), PlannedUnit("day", "A", D(2024, 1, 1), D(2024, 12, 31))])
    claimed = ledger.claim("w", 60, limit=5, datasets=datasets)
    assert {u.dataset for u in claimed} == expected


def test_claim_following_takes_only_the_contiguous_run_and_gives_the_rest_back(ledger):
    ledger.add_units([month("A", 2024, n) for n in (1, 2, 3, 5)] + [month("B", 2024, 2)])
    head = ledger.claim("w", 60, datasets=["minute"])[0]
    assert (head.ticker, head.period_start) == ("A", D(2024, 1, 1))
    following = ledger.claim_following("w", 60, head, limit=5)
    assert [u.period_start for u in following] == [D(2024, 2, 1), D(2024, 3, 1)]
    assert all(u.ticker == "A" and u.attempts == 1 for u in following)
    gap = ledger.query("SELECT state, attempts, lease_owner FROM units WHERE period = '2024-05'")[0]
    assert (gap.state, gap.attempts, gap.lease_owner) == ("pending", 0, None)  # given back, not charged
    other = ledger.query("SELECT state FROM units WHERE ticker = 'B'")[0]
    assert other.state == "pending"


def test_claim_following_respects_its_limit_and_takes_nothing_for_zero(ledger):
    ledger.add_units([month("A", 2024, n) for n in (1, 2, 3, 4, 5)])
    head = ledger.claim("w", 60)[0]
    assert ledger.claim_following("w", 60, head, limit=0) == []
    (one,) = ledger.claim_following("w", 60, head, limit=1)
    assert one.period_start.month == 2
    assert [u.period_start.month for u in ledger.claim_following("w", 60, one, limit=2)] == [3, 4]
    assert ledger.counts()["minute"] == {"running": 4, "pending": 1}


def test_units_claimed_to_follow_are_leased_to_the_same_owner(ledger, clock):
    ledger.add_units([month("A", 2024, n) for n in (1, 2)])
    head = ledger.claim("w", 60)[0]
    (following,) = ledger.claim_following("w", 45, head, limit=1)
    row = unit_row(ledger, following.id)
    assert (row.lease_owner, row.lease_token) == ("w", following.lease_token)
    assert row.lease_expires_at == iso(START + dt.timedelta(seconds=45))
    assert ledger.heartbeat("w", 60) == 2  # the owner's heartbeat keeps both alive


def test_claim_following_starts_right_after_the_head(ledger):
    ledger.add_units([month("A", 2024, n) for n in (1, 2, 3)])
    ledger.claim("w", 60)  # January, taken by someone else
    head = ledger.claim("w", 60)[0]  # February
    assert [u.period_start.month for u in ledger.claim_following("w", 60, head, limit=5)] == [3]


def test_settle_done_writes_file_columns_clears_the_lease_and_records_the_attempt(ledger, clock):
    ledger.add_units([month("A", 2024, 1)])
    unit = ledger.claim("w", 60)[0]
    clock.advance(7)
    attempt = AttemptRecord(
        requests=3, bytes=4567, bars=42, http_status=200, request_id="req-1", duplicates=2
    )
    ledger.settle_done(
        unit, StoredFile("minute/x/part.parquet", 42, "sha256:ab", 999), False, attempt, "run-9"
    )
    row = unit_row(ledger, unit.id)
    assert (row.state, row.rows, row.file_path, row.checksum, row.bytes, row.adjusted, row.requests) == (
        "done",
        42,
        "minute/x/part.parquet",
        "sha256:ab",
        999,
        False,
        3,
    )
    assert (row.lease_owner, row.lease_token, row.lease_expires_at) == (None, None, None)
    assert row.fetched_at == row.updated_at == iso(clock.now)
    (history,) = attempts_of(ledger, unit.id)
    assert (history.run_id, history.outcome, history.started_at, history.ended_at) == (
        "run-9",
        "done",
        unit.claimed_at,
        iso(clock.now),
    )
    assert (
        history.requests,
        history.bytes,
        history.bars,
        history.http_status,
        history.request_id,
        history.duplicates,
        history.error_class,
        history.error,
    ) == (3, 4567, 42, 200, "req-1", 2, None, None)


def test_settle_empty_after_a_failed_try_clears_error_and_file_and_adds_requests(ledger):
    ledger.add_units([month("A", 2024, 1)])
    first = ledger.claim("w", 60)[0]
    ledger.requeue(first, AttemptRecord(requests=2, error="boom", error_class="http_503"))
    second = ledger.claim("w", 60)[0]
    ledger.settle_empty(second, True, AttemptRecord(requests=1), "run-2")
    row = unit_row(ledger, second.id)
    assert (row.state, row.rows, row.file_path, row.checksum, row.bytes, row.adjusted) == (
        "empty_confirmed",
        0,
        None,
        None,
        None,
        True,
    )
    assert (row.last_error, row.error_class, row.requests, row.attempts) == (None, None, 3, 2)
    assert row.fetched_at is not None
    assert [(a.outcome, a.run_id) for a in attempts_of(ledger, second.id)] == [
        ("pending", None),
        ("empty_confirmed", "run-2"),
    ]


def test_settle_failed_keeps_the_error_on_the_unit_and_in_its_history(ledger):
    ledger.add_units([month("A", 2024, 1)])
    unit = ledger.claim("w", 60)[0]
    ledger.settle_failed(
        unit, AttemptRecord(requests=1, http_status=403, error="no", error_class="not_entitled"), "run-3"
    )
    row = unit_row(ledger, unit.id)
    assert (row.state, row.last_error, row.error_class, row.lease_owner, row.fetched_at) == (
        "failed",
        "no",
        "not_entitled",
        None,
        None,
    )
    (history,) = attempts_of(ledger, unit.id)
    assert (history.outcome, history.http_status, history.error, history.error_class, history.run_id) == (
        "failed",
        403,
        "no",
        "not_entitled",
        "run-3",
    )


def test_requeue_puts_the_unit_back_pending_with_its_error_and_attempt_count(ledger):
    ledger.add_units([month("A", 2024, 1)])
    unit = ledger.claim("w", 60)[0]
    ledger.requeue(unit, AttemptRecord(requests=4, error="slow", error_class="timeout"), "run-1")
    row = unit_row(ledger, unit.id)
    assert (row.state, row.attempts, row.requests, row.last_error, row.error_class) == (
        "pending",
        1,
        4,
        "slow",
        "timeout",
    )
    assert (row.lease_owner, row.lease_token, row.lease_expires_at) == (None, None, None)
    assert [(a.outcome, a.run_id, a.requests) for a in attempts_of(ledger, unit.id)] == [
        ("pending", "run-1", 4)
    ]


@pytest.mark.parametrize("settle", ["done", "empty", "failed", "requeue"])
def test_a_settle_with_a_lost_lease_raises_and_writes_nothing(ledger, clock, settle):
    ledger.add_units([month("A", 2024, 1)])
    stale = ledger.claim("dead", 30)[0]
    clock.advance(31)
    ledger.reclaim_expired()
    fresh = ledger.claim("alive", 30)[0]
    attempt = AttemptRecord(requests=5, error="e", error_class="c")
    with pytest.raises(LeaseLost):
        if settle == "done":
            ledger.settle_done(stale, StoredFile("p", 1, "sha256:x", 1), True, attempt)
        elif settle == "empty":
            ledger.settle_empty(stale, True, attempt)
        elif settle == "failed":
            ledger.settle_failed(stale, attempt)
        else:
            ledger.requeue(stale, attempt)
    row = unit_row(ledger, fresh.id)
    assert (row.state, row.lease_owner, row.lease_token, row.requests) == (
        "running",
        "alive",
        fresh.lease_token,
        0,
    )
    # only the reclaim's own record of the lost attempt: the late settle wrote nothing
    assert [(a.outcome, a.error_class, a.requests) for a in attempts_of(ledger, fresh.id)] == [
        ("pending", "lease_expired", 0)
    ]


def test_settle_fetched_settles_each_unit_it_still_holds(ledger, clock):
    from polyledger.ledger import FetchedUnit

    ledger.add_units([month("A", 2024, 1), month("A", 2024, 2)])
    lost, kept = ledger.claim("w", 30, limit=2)
    ledger.release(lost, undo_attempt=True)
    stored = StoredFile("minute/f/part.parquet", 3, "sha256:c", 30)
    result = ledger.settle_fetched(
        [FetchedUnit(kept, AttemptRecord(bars=3), stored), FetchedUnit(lost, AttemptRecord(), None)], True
    )
    assert result == [True, False]
    assert unit_row(ledger, kept.id).state == "done"
    assert unit_row(ledger, lost.id).state == "pending"

"""The worker's settle path, unit by unit, against a scripted client: which state each unit
of a group ends in, what it is charged, what its file holds, and what the ledger keeps of
an error. No server, no threads: every answer is given by the test."""

from __future__ import annotations

import datetime as dt

import orjson
import polars as pl
import pytest
from support import ScriptedClient

from polyledger.errors import AuthError, FatalRunError, NotEntitled, StorageError, TransientError
from polyledger.fetch.units import UnitJob, UnitOutcome, process_units
from polyledger.ledger import ClaimedUnit, Ledger, PlannedUnit, UnitState
from polyledger.periods import et_midnight_ms
from polyledger.polygon.client import Stopped
from polyledger.secrets import register_secret
from polyledger.storage import BarStore

D = dt.date
BASE = "https://api.test"
HOUR = 3_600_000


def at(day: D, hours: int = 15) -> int:
    """Epoch ms of `hours` after midnight US/Eastern on `day`."""
    return et_midnight_ms(day) + hours * HOUR


def page(
    times: list[int], next_from: int | None = None, request_id: str = "rq", to: str = "2024-03-31"
) -> bytes:
    bars = [{"t": t, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10.0, "vw": 1.2, "n": 3} for t in times]
    body = {
        "ticker": "AAPL",
        "status": "OK",
        "adjusted": True,
        "request_id": request_id,
        "resultsCount": len(bars),
        "results": bars,
    }
    if next_from is not None:
        # `from` moved, `to` as the group asked it (months 1-3 unless told)
        body["next_url"] = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/{next_from}/{to}?cursor=c"
    return orjson.dumps(body)


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


@pytest.fixture
def store(tmp_path) -> BarStore:
    return BarStore(tmp_path / "data")


def months(ledger: Ledger, *numbers: int, ticker: str = "AAPL") -> list[ClaimedUnit]:
    """Plan and claim these months of 2024, as one group."""
    ledger.add_units(
        [
            PlannedUnit("minute", ticker, D(2024, n, 1), D(2024, n + 1, 1) - dt.timedelta(days=1))
            for n in numbers
        ]
    )
    return ledger.claim("w", 60, limit=len(numbers))


def job(client: ScriptedClient, ledger: Ledger, store: BarStore, **options: object) -> UnitJob:
    return UnitJob(client=client, ledger=ledger, store=store, adjusted=True, run_id="run-1", **options)  # type: ignore[arg-type]


def rows(ledger: Ledger) -> list:
    return ledger.query("SELECT * FROM units ORDER BY period_start")


def history(ledger: Ledger) -> list:
    return ledger.query("SELECT * FROM unit_attempts ORDER BY unit_id, id")


def stored_rows(store: BarStore, month: int) -> int:
    return store.read_parquet(f"minute/ticker=AAPL/year=2024/month={month:02d}/part.parquet").height


def test_one_page_for_three_months_settles_each_and_charges_the_request_once(ledger, store):
    body = page([at(D(2024, 1, 2)), at(D(2024, 1, 31), 19), at(D(2024, 3, 4))])
    outcomes = process_units(months(ledger, 1, 2, 3), job(ScriptedClient([body]), ledger, store))
    assert outcomes == [
        UnitOutcome("done", 2, 1),
        UnitOutcome("empty_confirmed", 0, 0),
        UnitOutcome("done", 1, 0),
    ]
    assert [(r.state, r.adjusted) for r in rows(ledger)] == [
        ("done", True),
        ("empty_confirmed", True),
        ("done", True),
    ]
    assert (stored_rows(store, 1), stored_rows(store, 3)) == (2, 1)
    assert [(a.requests, a.bytes, a.bars, a.request_id) for a in history(ledger)] == [
        (1, len(body), 2, "rq"),
        (0, 0, 0, "rq"),
        (0, 0, 1, "rq"),
    ]
    assert [a.run_id for a in history(ledger)] == ["run-1"] * 3


def test_a_unit_fetched_again_without_bars_takes_its_old_file_away(ledger, store, caplog):
    """A done unit fetched again (`retry --stale`, `repair`) whose answer has no bars now
    settles `empty_confirmed` without its old file: a read of the folder agrees with the
    ledger (the flat-file route's case: `test_flatfiles.py`). The file is kept aside in
    `.quarantine/`, never deleted, and the run's log says where."""
    process_units(months(ledger, 1), job(ScriptedClient([page([at(D(2024, 1, 2))])]), ledger, store))
    path = "minute/ticker=AAPL/year=2024/month=01/part.parquet"
    assert store.exists(path)
    ledger.reset_units("dataset = 'minute'", {}, {UnitState.DONE})

    (again,) = ledger.claim("w", 60)
    assert again.previous_file == path
    # the empty month, then its first day alone (nothing known inside the plan's history yet)
    outcomes = process_units([again], job(ScriptedClient([page([]), page([])]), ledger, store))
    assert outcomes == [UnitOutcome("empty_confirmed", 0, 2)]
    assert (rows(ledger)[0].state, rows(ledger)[0].file_path) == ("empty_confirmed", None)
    assert not store.exists(path) and path not in set(store.walk())
    (kept,) = (store.root / ".quarantine").rglob("*.parquet")
    assert kept.as_posix().endswith("/" + path) and pl.read_parquet(kept).height == 1
    (said,) = [r for r in caplog.records if "kept aside" in r.getMessage()]
    assert said.levelname == "WARNING" and str(kept) in said.getMessage()


def test_pages_settle_months_as_they_complete_and_keep_only_later_bars(ledger, store):
    march_first = et_midnight_ms(D(2024, 3, 1))  # exactly midnight: March's, not February's
    first = page([at(D(2024, 1, 2)), at(D(2024, 1, 20))], next_from=at(D(2024, 1, 20)) + 1, request_id="p1")
    second = page([at(D(2024, 2, 2)), march_first, at(D(2024, 3, 5))], request_id="p2")
    client = ScriptedClient([first, second], tries=2)
    outcomes = process_units(months(ledger, 1, 2, 3), job(client, ledger, store))
    assert outcomes == [UnitOutcome("done", 2, 4), UnitOutcome("done", 1, 0), UnitOutcome("done", 2, 0)]
    assert [stored_rows(store, m) for m in (1, 2, 3)] == [2, 1, 2]
    assert [(a.requests, a.request_id) for a in history(ledger)] == [(4, "p2"), (0, "p2"), (0, "p2")]
    assert client.calls[0] == (
        f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-01/2024-03-31",
        {"adjusted": "true", "sort": "asc", "limit": "50000"},
    )


def test_a_month_settled_by_a_page_is_charged_before_the_next_page(ledger, store):
    first = page([at(D(2024, 1, 2)), at(D(2024, 2, 3))], next_from=at(D(2024, 2, 3)) + 1, to="2024-02-29")
    second = page([at(D(2024, 2, 20))])
    process_units(months(ledger, 1, 2), job(ScriptedClient([first, second]), ledger, store))
    assert [(a.outcome, a.requests, a.bytes) for a in history(ledger)] == [
        ("done", 1, len(first)),
        ("done", 1, len(second)),
    ]
    assert [stored_rows(store, m) for m in (1, 2)] == [1, 2]


def test_a_month_is_not_settled_while_a_page_may_still_bring_its_last_day(ledger, store):
    # page one ends on January 31st, January's last day: page two has more of that day
    first = page(
        [at(D(2024, 1, 2)), at(D(2024, 1, 31), 10)], next_from=at(D(2024, 1, 31), 10) + 1, to="2024-02-29"
    )
    second = page([at(D(2024, 1, 31), 11), at(D(2024, 2, 5))])
    process_units(months(ledger, 1, 2), job(ScriptedClient([first, second]), ledger, store))
    assert [stored_rows(store, m) for m in (1, 2)] == [3, 1]


def test_a_page_going_back_into_a_month_fails_the_group_before_that_month_settles(ledger, store):
    # page one passes January's end, page two goes back to January 31st: the answer is
    # inconsistent, so no month is settled from it (January was settled with page one's bar
    # alone, `done` with a hole, before the units a page completes waited for the next page's
    # check); each month is asked alone instead
    first = page([at(D(2024, 1, 2)), at(D(2024, 2, 2))], next_from=at(D(2024, 2, 2)) + 1, to="2024-02-29")
    second = page([at(D(2024, 1, 31)), at(D(2024, 2, 5))])
    january = page([at(D(2024, 1, 2)), at(D(2024, 1, 31))])
    february = page([at(D(2024, 2, 2)), at(D(2024, 2, 5))])
    client = ScriptedClient([first, second, january, february])
    process_units(months(ledger, 1, 2), job(client, ledger, store))
    assert [(r.state, r.rows) for r in rows(ledger)] == [("done", 2), ("done", 2)]
    assert [stored_rows(store, m) for m in (1, 2)] == [2, 2]


def test_repeated_timestamps_are_stored_once_and_counted(ledger, store):
    body = page([at(D(2024, 1, 2)), at(D(2024, 1, 2)), at(D(2024, 1, 3))])
    process_units(months(ledger, 1), job(ScriptedClient([body]), ledger, store))
    assert stored_rows(store, 1) == 2
    assert history(ledger)[0].duplicates == 1


def test_a_transient_error_requeues_the_waiting_units_with_its_class(ledger, store):
    first = page([at(D(2024, 1, 2))], next_from=at(D(2024, 1, 2)) + 1, to="2024-02-29")
    error = TransientError("server said 503", error_class="http_503", http_status=503, request_id="r-err")
    outcomes = process_units(months(ledger, 1, 2), job(ScriptedClient([first, error]), ledger, store))
    assert outcomes == [UnitOutcome("requeued", 0, 1, "http_503"), UnitOutcome("requeued", 0, 0, "http_503")]
    assert [(r.state, r.error_class, r.last_error, r.attempts) for r in rows(ledger)] == [
        ("pending", "http_503", "server said 503", 1)
    ] * 2
    assert [(a.requests, a.bytes, a.http_status, a.request_id, a.run_id) for a in history(ledger)] == [
        (1, len(first), 503, "r-err", "run-1"),
        (0, 0, 503, "r-err", "run-1"),
    ]
    assert list(store.walk()) == []


def test_a_transient_error_on_the_last_attempt_fails_the_unit(ledger, store):
    ledger.add_units([PlannedUnit("minute", "AAPL", D(2024, 1, 1), D(2024, 1, 31))])
    for _ in range(2):  # two attempts used up already
        (unit,) = ledger.claim("w", 60)
        ledger.requeue(unit, _attempt())
    units = ledger.claim("w", 60)
    assert units[0].attempts == 3
    error = TransientError("timed out", error_class="timeout")  # no request id: the last page's
    outcomes = process_units(units, job(ScriptedClient([error]), ledger, store))
    assert outcomes == [UnitOutcome("failed", 0, 0, "timeout")]
    assert (rows(ledger)[0].state, rows(ledger)[0].error_class) == ("failed", "timeout")
    assert [(a.outcome, a.run_id) for a in history(ledger)][-1] == ("failed", "run-1")


def test_attempts_left_depend_on_max_attempts(ledger, store):
    units = months(ledger, 1)
    error = TransientError("timed out", error_class="timeout")
    outcomes = process_units(units, job(ScriptedClient([error]), ledger, store, max_attempts=1))
    assert outcomes == [UnitOutcome("failed", 0, 0, "timeout")]


def test_a_permanent_error_on_a_group_is_asked_again_unit_by_unit(ledger, store):
    denied = NotEntitled("not entitled to that range", http_status=403)
    # February's first bar is on the 7th: its first day is asked alone (an empty 200:
    # February was not clipped at the plan's history, nor is March, which starts later)
    client = ScriptedClient(
        [denied, NotEntitled("still not", http_status=403), page([at(D(2024, 2, 7))]), page([]), page([])]
    )
    outcomes = process_units(months(ledger, 1, 2, 3), job(client, ledger, store))
    assert outcomes == [
        UnitOutcome("failed", 0, 0, "not_entitled"),
        UnitOutcome("done", 1, 2),
        UnitOutcome("empty_confirmed", 0, 1),
    ]
    assert [url.rsplit("/", 2)[-2:] for url, _ in client.calls] == [
        ["2024-01-01", "2024-03-31"],
        ["2024-01-01", "2024-01-31"],
        ["2024-02-01", "2024-02-29"],
        ["2024-02-01", "2024-02-01"],
        ["2024-03-01", "2024-03-31"],
    ]
    assert [(r.state, r.error_class) for r in rows(ledger)] == [
        ("failed", "not_entitled"),
        ("done", None),
        ("empty_confirmed", None),
    ]
    assert history(ledger)[0].http_status == 403


def test_a_fatal_error_while_units_are_asked_alone_gives_every_one_back(ledger, store):
    """A 403 on the group, then the key refused while its months are asked one by one: the
    run stops, and none of them is left `running` under its lease (found by a review)."""
    client = ScriptedClient([NotEntitled("not entitled", http_status=403), AuthError("key refused")])
    with pytest.raises(AuthError):
        process_units(months(ledger, 1, 2, 3), job(client, ledger, store))
    assert [(r.state, r.lease_owner) for r in rows(ledger)] == [("pending", None)] * 3


@pytest.mark.parametrize("answered_for", ["MSFT", "aapl"])
def test_an_answer_for_another_ticker_fails_the_unit_never_stored_as_the_asked_one(
    ledger, store, answered_for
):
    """Found by a review: a page saying it holds MSFT's bars was stored as AAPL's. Symbols
    are case-sensitive: `aapl` is another one."""
    body = page([at(D(2024, 1, 2))]).replace(b'"ticker":"AAPL"', f'"ticker":"{answered_for}"'.encode())
    assert f'"ticker":"{answered_for}"'.encode() in body
    outcomes = process_units(months(ledger, 1), job(ScriptedClient([body]), ledger, store))
    assert outcomes == [UnitOutcome("failed", 0, 1, "protocol")]
    assert "MSFT" in rows(ledger)[0].last_error or "aapl" in rows(ledger)[0].last_error
    assert not store.exists("minute/ticker=AAPL/year=2024/month=01/part.parquet")


def test_a_permanent_error_on_two_units_is_asked_again_for_each(ledger, store):
    denied = NotEntitled("not entitled", http_status=403)
    client = ScriptedClient([denied, page([at(D(2024, 1, 2))]), page([at(D(2024, 2, 1))])])
    outcomes = process_units(months(ledger, 1, 2), job(client, ledger, store))
    assert outcomes == [UnitOutcome("done", 1, 1), UnitOutcome("done", 1, 1)]
    assert len(client.calls) == 3


def test_bars_outside_the_asked_dates_fail_the_unit_never_empty(ledger, store):
    body = page([at(D(2024, 2, 1))])  # February's bar in an answer about January
    outcomes = process_units(months(ledger, 1), job(ScriptedClient([body]), ledger, store))
    assert outcomes == [UnitOutcome("failed", 0, 1, "out_of_range")]
    assert rows(ledger)[0].last_error == "1 bars outside the requested dates"


def test_a_stop_gives_the_units_back_without_counting_the_attempt(ledger, store):
    outcomes = process_units(months(ledger, 1, 2), job(ScriptedClient([Stopped()]), ledger, store))
    assert outcomes == [UnitOutcome("released"), UnitOutcome("released")]
    assert [(r.state, r.attempts, r.lease_owner) for r in rows(ledger)] == [("pending", 0, None)] * 2
    assert history(ledger) == []


def test_a_fatal_error_gives_the_units_back_and_stops_the_run(ledger, store):
    with pytest.raises(FatalRunError, match="bad key"):
        process_units(months(ledger, 1, 2), job(ScriptedClient([FatalRunError("bad key")]), ledger, store))
    assert [(r.state, r.attempts) for r in rows(ledger)] == [("pending", 0)] * 2


def test_a_bug_fails_the_units_visibly_with_its_type(ledger, store):
    outcomes = process_units(
        months(ledger, 1), job(ScriptedClient([ZeroDivisionError("oops")]), ledger, store)
    )
    assert outcomes == [UnitOutcome("failed", 0, 0, "internal:ZeroDivisionError")]
    assert (rows(ledger)[0].state, rows(ledger)[0].last_error) == ("failed", "oops")


def test_a_hand_edited_ticker_fails_as_invalid_without_a_request(ledger, store):
    client = ScriptedClient([])
    outcomes = process_units(months(ledger, 1, ticker="../X"), job(client, ledger, store))
    assert outcomes == [UnitOutcome("failed", 0, 0, "invalid_ticker")]
    assert client.calls == []


def test_an_error_is_stored_redacted_and_cut_to_500_characters(ledger, store, monkeypatch):
    monkeypatch.setattr("polyledger.secrets._secrets", set())  # this test's secret only
    register_secret("sekret-key-123")
    error = TransientError("key sekret-key-123 refused " + "x" * 600, error_class="http_500")
    process_units(months(ledger, 1), job(ScriptedClient([error]), ledger, store))
    stored = rows(ledger)[0].last_error
    assert stored.startswith("key *** refused x") and len(stored) == 500
    assert "sekret" not in history(ledger)[0].error


def test_a_unit_whose_lease_was_lost_is_reported_lost(ledger, store):
    (unit,) = months(ledger, 1)
    ledger.release(unit, undo_attempt=False)  # someone else's now
    body = page([at(D(2024, 1, 2))])
    assert process_units([unit], job(ScriptedClient([body]), ledger, store)) == [UnitOutcome("lost", 0, 1)]
    first = page([at(D(2024, 1, 2))], next_from=at(D(2024, 1, 2)) + 1, to="2024-01-31")
    error = TransientError("503", error_class="http_503")
    # the request made before the failure is still reported as spent
    assert process_units([unit], job(ScriptedClient([first, error]), ledger, store)) == [
        UnitOutcome("lost", 0, 1)
    ]
    assert rows(ledger)[0].state == "pending"


def _attempt():  # type: ignore[no-untyped-def]
    from polyledger.ledger import AttemptRecord

    return AttemptRecord(error="earlier", error_class="timeout")


# --- reference units (splits): the same rules, one unit at a time ---------------------


def splits_unit(ledger: Ledger) -> list[ClaimedUnit]:
    ledger.add_units([PlannedUnit("splits", "AAPL", D(2000, 1, 1), D(2024, 6, 30), period_name="all")])
    return ledger.claim("w", 60)


def splits_page(results: list[dict]) -> bytes:
    return orjson.dumps({"status": "OK", "request_id": "ref-1", "results": results})


SPLIT = {"ticker": "AAPL", "execution_date": "2020-08-31", "split_from": 1, "split_to": 4, "id": "s1"}


def test_a_reference_unit_with_results_is_done_and_its_splits_recorded(ledger, store):
    body = splits_page([SPLIT])
    outcomes = process_units(splits_unit(ledger), job(ScriptedClient([body]), ledger, store))
    assert outcomes == [UnitOutcome("done", 1, 1)]
    assert (rows(ledger)[0].state, rows(ledger)[0].file_path) == ("done", "splits/ticker=AAPL/part.parquet")
    assert [
        tuple(r) for r in ledger.query("SELECT ticker, execution_date, split_from, split_to FROM splits")
    ] == [("AAPL", "2020-08-31", 1.0, 4.0)]
    assert store.read_parquet("splits/ticker=AAPL/part.parquet").height == 1
    (attempt,) = history(ledger)
    assert (attempt.requests, attempt.bytes, attempt.bars, attempt.request_id, attempt.run_id) == (
        1,
        len(body),
        1,
        "ref-1",
        "run-1",
    )


def test_a_reference_unit_without_results_is_empty_confirmed(ledger, store):
    outcomes = process_units(splits_unit(ledger), job(ScriptedClient([splits_page([])]), ledger, store))
    assert outcomes == [UnitOutcome("empty_confirmed", 0, 1)]
    assert list(store.walk()) == []


def test_a_reference_unit_follows_the_bar_rules_for_errors(ledger, store):
    error = TransientError("503", error_class="http_503", request_id="r9")
    assert process_units(splits_unit(ledger), job(ScriptedClient([error]), ledger, store)) == [
        UnitOutcome("requeued", 0, 0, "http_503")
    ]
    assert history(ledger)[0].request_id == "r9"
    assert process_units(ledger.claim("w", 60), job(ScriptedClient([Stopped()]), ledger, store)) == [
        UnitOutcome("released")
    ]
    assert (rows(ledger)[0].state, rows(ledger)[0].attempts) == ("pending", 1)
    with pytest.raises(FatalRunError):
        process_units(ledger.claim("w", 60), job(ScriptedClient([FatalRunError("no")]), ledger, store))
    assert (rows(ledger)[0].state, rows(ledger)[0].attempts) == ("pending", 1)


def test_a_reference_failure_is_charged_what_its_pages_cost(ledger, store):
    first = orjson.dumps(
        {"status": "OK", "request_id": "ref-1", "results": [SPLIT], "next_url": f"{BASE}/next"}
    )
    error = TransientError("503", error_class="http_503")  # no request id of its own
    outcomes = process_units(splits_unit(ledger), job(ScriptedClient([first, error], tries=2), ledger, store))
    assert outcomes == [UnitOutcome("requeued", 0, 2, "http_503")]
    (attempt,) = history(ledger)
    assert (attempt.requests, attempt.bytes, attempt.request_id) == (2, len(first), "ref-1")


def test_a_details_unit_is_stored_under_its_build_date(ledger, store):
    # as universe_build plans it: period_start the build date, period_end the date asked
    ledger.add_units(
        [PlannedUnit("details", "AAPL", D(2024, 7, 1), D(2024, 6, 28), period_name="2024-07-01")]
    )
    body = orjson.dumps({"status": "OK", "request_id": "d1", "results": {"ticker": "AAPL", "name": "Apple"}})
    client = ScriptedClient([body])
    assert process_units(ledger.claim("w", 60), job(client, ledger, store)) == [UnitOutcome("done", 1, 1)]
    assert rows(ledger)[0].file_path == "details/as_of=2024-07-01/ticker=AAPL/part.parquet"
    assert client.calls == [(f"{BASE}/v3/reference/tickers/AAPL", {"date": "2024-06-28"})]


def test_a_reference_unit_whose_lease_was_lost_is_reported_lost(ledger, store):
    (unit,) = splits_unit(ledger)
    ledger.release(unit, undo_attempt=False)
    outcomes = process_units([unit], job(ScriptedClient([splits_page([SPLIT])]), ledger, store))
    assert outcomes == [UnitOutcome("lost", 0, 1)]


def test_a_hand_edited_reference_ticker_fails_as_invalid(ledger, store):
    ledger.add_units([PlannedUnit("splits", "a b", D(2000, 1, 1), D(2024, 6, 30), period_name="all")])
    outcomes = process_units(ledger.claim("w", 60), job(ScriptedClient([]), ledger, store))
    assert outcomes == [UnitOutcome("failed", 0, 0, "invalid_ticker")]


def test_stored_bars_are_the_pages_bars_in_the_stored_schema(ledger, store):
    body = page([at(D(2024, 1, 2))])
    process_units(months(ledger, 1), job(ScriptedClient([body]), ledger, store))
    frame = store.read_parquet("minute/ticker=AAPL/year=2024/month=01/part.parquet")
    assert frame.row(0, named=True)["ticker"] == "AAPL"
    assert frame.get_column("timestamp").dtype == pl.Datetime("ms", "UTC")


def priced_page(times: list[int], close: float, to: str) -> bytes:
    """A page whose bars all close at `close` (so two answers' files can be told apart)."""
    body = orjson.loads(page(times, to=to))
    for bar in body["results"]:
        bar.update(o=close, h=close, l=close, c=close)
    return orjson.dumps(body)


@pytest.mark.parametrize("settle_new_owner", [True, False], ids=["new-owner-settled", "new-owner-writing"])
def test_a_worker_whose_lease_lapsed_never_replaces_the_new_owners_file(tmp_path, store, settle_new_owner):
    """A worker's lease runs out (ledger clock moved, no sleep), the unit is reclaimed and
    another worker claims it and writes its file. The late worker then gets its answer:
    it must not replace the new owner's file (the ledger's checksum is the new owner's),
    leaves no temporary, and reports the unit lost."""
    from support import LedgerClock

    from polyledger.storage import file_checksum

    clock = LedgerClock()
    relative = "minute/ticker=AAPL/year=2024/month=01/part.parquet"
    with Ledger(tmp_path / "clocked.db", clock=clock) as ledger:
        ledger.add_units([PlannedUnit("minute", "AAPL", D(2024, 1, 1), D(2024, 1, 31))])
        (late,) = ledger.claim("old-worker", 60)
        clock.advance(61)  # the old worker stalled past its lease
        assert ledger.reclaim_expired() == [("minute", "AAPL", D(2024, 1, 1))]
        (fresh,) = ledger.claim("new-worker", 60)
        new_answer = priced_page([at(D(2024, 1, 2)), at(D(2024, 1, 8))], 2.0, "2024-01-31")
        if settle_new_owner:
            outcomes = process_units([fresh], job(ScriptedClient([new_answer]), ledger, store))
            assert outcomes == [UnitOutcome("done", 2, 1)]
        else:  # its file is in place, its settle not yet made
            written = store.write_unit("minute", "AAPL", D(2024, 1, 1), _stored(new_answer))
            assert written.path == relative
        theirs = file_checksum(store.path_of(relative))  # type: ignore[attr-defined]

        old_answer = priced_page([at(D(2024, 1, 2))], 9.0, "2024-01-31")
        outcomes = process_units([late], job(ScriptedClient([old_answer]), ledger, store))

        assert outcomes == [UnitOutcome("lost", 0, 1)]
        assert file_checksum(store.path_of(relative)) == theirs  # type: ignore[attr-defined]
        assert store.read_parquet(relative).get_column("close").to_list() == [2.0, 2.0]
        assert store.temporaries() == []
        row = ledger.query("SELECT state, lease_token, checksum FROM units")[0]
        if settle_new_owner:
            assert (row.state, row.checksum) == ("done", theirs)
        else:
            assert (row.state, row.lease_token) == ("running", fresh.lease_token)


def _stored(body: bytes) -> pl.DataFrame:
    from polyledger.bars import bars_for_unit
    from polyledger.polygon.aggs import decode_aggregates

    return bars_for_unit(decode_aggregates(body).bars, "AAPL", D(2024, 1, 1), D(2024, 1, 31))


def test_a_worker_whose_lease_ran_out_writes_nothing_even_before_a_reclaim(tmp_path, store):
    """Expired but not yet reclaimed: the unit may be reclaimed any moment, so the file is
    not written; the unit stays running until the reclaim puts it back in the queue."""
    from support import LedgerClock

    clock = LedgerClock()
    with Ledger(tmp_path / "clocked.db", clock=clock) as ledger:
        ledger.add_units([PlannedUnit("minute", "AAPL", D(2024, 1, 1), D(2024, 1, 31))])
        (late,) = ledger.claim("old-worker", 60)
        assert ledger.still_holds(late)
        clock.advance(60)
        assert ledger.still_holds(late)  # to the last instant of the lease
        clock.advance(1)
        assert not ledger.still_holds(late)
        answer = priced_page([at(D(2024, 1, 2))], 9.0, "2024-01-31")
        assert process_units([late], job(ScriptedClient([answer]), ledger, store)) == [
            UnitOutcome("lost", 0, 1)
        ]
        assert not store.exists("minute/ticker=AAPL/year=2024/month=01/part.parquet")
        assert store.temporaries() == []
        assert ledger.reclaim_expired() == [("minute", "AAPL", D(2024, 1, 1))]


def test_a_transient_error_on_a_later_page_keeps_the_month_an_earlier_page_completed(ledger, store):
    """Found by a review: page one completes January (its bars run past January's end), the
    next request is a 503 after the client's retries. A 503 says nothing against page one:
    January is stored, done; only February goes back to the queue."""
    first = page([at(D(2024, 1, 2)), at(D(2024, 2, 3))], next_from=at(D(2024, 2, 3)) + 1, to="2024-02-29")
    error = TransientError("server said 503", error_class="http_503", http_status=503)
    process_units(months(ledger, 1, 2), job(ScriptedClient([first, error]), ledger, store))
    assert [(r.state, r.rows) for r in rows(ledger)] == [("done", 1), ("pending", None)]
    assert stored_rows(store, 1) == 1


def test_a_stop_after_a_page_keeps_the_month_that_page_completed(ledger, store):
    """Found by a review: a stop (Ctrl-C, another worker's 401) after page one released
    January with February, unstored, its requests to be made again."""
    first = page([at(D(2024, 1, 2)), at(D(2024, 2, 3))], next_from=at(D(2024, 2, 3)) + 1, to="2024-02-29")
    process_units(months(ledger, 1, 2), job(ScriptedClient([first, Stopped()]), ledger, store))
    assert [(r.state, r.rows) for r in rows(ledger)] == [("done", 1), ("pending", None)]
    assert stored_rows(store, 1) == 1


def test_a_full_disk_while_keeping_the_months_after_a_503_gives_the_group_back(ledger, store, monkeypatch):
    """Found by a review: the months kept after a 503 are stored from the error's handler;
    a StorageError there (a fatal error) skipped the group's own fatal handler and left its
    units `running` under a dead lease. They go back to pending and the run stops."""
    first = page([at(D(2024, 1, 2)), at(D(2024, 2, 3))], next_from=at(D(2024, 2, 3)) + 1, to="2024-02-29")
    error = TransientError("server said 503", error_class="http_503", http_status=503)

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StorageError("cannot write minute/...: No space left on device")

    monkeypatch.setattr(store, "put_unit", full)
    work = job(ScriptedClient([first, error]), ledger, store)
    with pytest.raises(StorageError):
        process_units(months(ledger, 1, 2), work)
    assert [r.state for r in rows(ledger)] == ["pending", "pending"]
    assert work.stop.is_set()

"""The flat-file route (`run --source flatfiles`) fills the same units and files as the REST
route: bar for bar the same (vwap aside), holidays planned as nothing, a missing day file
failed (never empty), a repeated row dropped and counted, a replaced file making its units
stale, adjusted ledgers refused, a 403 told in one line without secrets."""

# ruff: noqa: F811 - moto_endpoint, the fixture imported from test_s3, is each test's argument
from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from flat_support import (
    DAYS,
    END,
    HOLIDAYS,
    SECRET,
    START,
    UNIVERSE,
    D,
    bars,
    plan,
    publish_market,
    use_bucket,
)
from polars.testing import assert_frame_equal
from support import API_KEY, cli_command, python_env, run_cli, wait_for, write_universe
from test_postgres import admin_url, new_database, pg_url  # noqa: F401 - PostgreSQL ledgers
from test_s3 import moto_endpoint  # noqa: F401 - the session's local S3

from polyledger.datasets import MARKET
from polyledger.flatfiles import publication
from polyledger.flatfiles import units as flat_units
from polyledger.flatfiles.prepare import prepare
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.periods import ET
from polyledger.testing.flatfiles import (
    FlatDefects,
    day_rows,
    gzip_csv,
    object_key,
    publish,
    replace_day,
    s3_client,
)
from polyledger.trading_days import trading_days

DUPLICATED = (D(2023, 5, 10), "TINY")


def _units(ledger: str, dataset: str) -> list[sqlite3.Row]:
    with sqlite3.connect(ledger) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT * FROM units WHERE dataset = ? ORDER BY ticker, period_start", (dataset,)
        ).fetchall()


def _flat(ledger: str, data: str, *extra: object):  # type: ignore[no-untyped-def]
    return run_cli("run", "--source", "flatfiles", "--unadjusted", "--ledger", ledger, "--data", data, *extra)


@pytest.fixture
def bucket(moto_endpoint: str, work, monkeypatch: pytest.MonkeyPatch, request) -> str:
    name = f"flat-{request.node.name.replace('_', '-')[:40].lower()}"
    use_bucket(monkeypatch, moto_endpoint, name)
    return name


def test_flat_files_give_the_rest_routes_bars(work, market, server, moto_endpoint, bucket):
    publish_market(moto_endpoint, bucket, market, FlatDefects(duplicated=(DUPLICATED,)))
    flat_ledger, flat_data = plan(work, "flat")
    rest_ledger, rest_data = plan(work, "rest")

    result = _flat(flat_ledger, flat_data, "--workers", "2")
    assert result.code == 0, result.err + result.out
    rest = run_cli(
        "run", "--unadjusted", "--base-url", server.url, "--ledger", rest_ledger, "--data", rest_data
    )
    assert rest.code == 0, rest.err

    for dataset in ("minute", "day"):
        got, want = bars(work, flat_data, dataset), bars(work, rest_data, dataset)
        assert want.height > 1000 if dataset == "minute" else want.height > 100
        assert_frame_equal(got, want)
        assert {row["source"] for row in _units(flat_ledger, dataset)} == {"flatfiles"}
        assert {row["source"] for row in _units(rest_ledger, dataset)} == {"rest"}
        # the same units settle the same way (rows aside: the synthetic market trades on holidays)
        settled = [[(r["ticker"], r["period"], r["state"]) for r in _units(name, dataset)]
                   for name in (flat_ledger, rest_ledger)]  # fmt: skip
        assert settled[0] == settled[1] and {state for _, _, state in settled[0]} <= {
            "done",
            "empty_confirmed",
        }
    # a holiday is no unit: one day unit per trading day, each read once
    days = _units(flat_ledger, "minute_files")
    assert [row["period_start"] for row in days] == [day.isoformat() for day in DAYS]
    assert not {day.isoformat() for day in HOLIDAYS} & {row["period_start"] for row in days}
    # the repeated row of the day file is dropped and counted on its ticker's month
    with sqlite3.connect(flat_ledger) as db:
        counted = db.execute(
            "SELECT u.ticker, u.period, sum(a.duplicates) FROM unit_attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE a.duplicates > 0 GROUP BY u.ticker, u.period"
        ).fetchall()
    assert sorted(counted) == [("TINY", "2023", 1), ("TINY", "2023-05", 1)]  # its minute and day rows
    audit = run_cli("audit", "--ledger", flat_ledger, "--data", flat_data)
    assert audit.code == 0, audit.out
    # every period settled: the staged days are deleted, the day units stay done (read)
    assert f"staged day files deleted: {2 * len(days)}" in result.out, result.out  # minute and day files
    assert not list((work / flat_data).glob("*_files/**/*.parquet"))
    assert {(row["state"], row["file_path"]) for row in days} == {("done", None)}
    assert run_cli("audit", "--deep", "--ledger", flat_ledger, "--data", flat_data).code == 0


def _staged(work, data: str) -> list:  # type: ignore[no-untyped-def]
    return sorted((work / data / "minute_files").rglob("*.parquet"))


def test_a_deleted_staged_day_is_read_again_when_a_unit_needs_it(work, market, server, moto_endpoint, bucket):
    """A month rebuilt after its staged days were deleted (a file repaired, a ticker planned
    since) has its days read from the bucket again, never taken as days without bars."""
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    assert _flat(ledger, data).code == 0
    before = bars(work, data, "minute")
    assert _staged(work, data) == []

    unit = next(
        row for row in _units(ledger, "minute") if row["ticker"] == "AAPL" and row["period"] == "2023-05"
    )
    (work / data / unit["file_path"]).write_bytes(b"damaged")
    assert run_cli("repair", "--ledger", ledger, "--data", data).code == 0  # quarantined, queued again
    result = _flat(ledger, data)
    assert result.code == 0, result.err + result.out
    may = [day for day in DAYS if day.month == 5]
    assert f"day files read again: {len(may)}" in result.out, result.out
    assert_frame_equal(bars(work, data, "minute"), before)  # May's bars all back, none lost
    assert _staged(work, data) == []

    # a ticker planned since: every day of its months read again (staged for fewer tickers)
    write_universe(work / "universe.csv", [*UNIVERSE, "PLUG"])
    assert (
        run_cli("plan", "--universe", "universe.csv", "--from", START, "--to", END, "--ledger", ledger).code
        == 0
    )
    assert _flat(ledger, data).code == 0
    rest_ledger, rest_data = "rest.db", "rest-data"
    write_universe(work / "rest.csv", ["PLUG"])
    assert (
        run_cli("plan", "--universe", "rest.csv", "--from", START, "--to", END, "--ledger", rest_ledger).code
        == 0
    )
    rest = run_cli(
        "run", "--unadjusted", "--base-url", server.url, "--ledger", rest_ledger, "--data", rest_data
    )
    assert rest.code == 0, rest.err
    plug = bars(work, data, "minute").filter(pl.col("ticker") == "PLUG")
    assert plug.height > 1000
    assert_frame_equal(plug, bars(work, rest_data, "minute"))
    assert run_cli("audit", "--deep", "--ledger", ledger, "--data", data).code == 0


def test_a_stop_between_deleting_a_staged_day_and_forgetting_it_heals_on_the_next_run(
    work, market, moto_endpoint, bucket, monkeypatch
):
    from polyledger.flatfiles import route
    from polyledger.flatfiles.prune import Pruned

    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    with monkeypatch.context() as patched:
        patched.setattr(route, "prune_staged", lambda *args: Pruned(0, 0))  # stopped before pruning
        assert _flat(ledger, data).code == 0
    staged = _staged(work, data)
    assert len(staged) > 20
    staged[0].unlink()  # deleted, and the run stopped before the ledger forgot it
    deep = run_cli("audit", "--deep", "--ledger", ledger, "--data", data)
    assert deep.code == 1 and "missing_file" in deep.out, deep.out
    result = _flat(ledger, data)  # nothing to fetch: the prune alone
    assert result.code == 0, result.err + result.out
    assert f"staged day files deleted: {len(staged)}" in result.out, result.out
    assert _staged(work, data) == []
    assert run_cli("audit", "--deep", "--ledger", ledger, "--data", data).code == 0


def test_flat_files_in_two_processes_give_what_one_gives(work, market, moto_endpoint, bucket):
    """`--processes 2`: each phase (the days, then the months) in two child processes on the
    ledger, the flat-file keys from the environment they inherit; the same bars as one
    process, each day read once, the staged days deleted after."""
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "two", ("minute",))
    single_ledger, single_data = plan(work, "one", ("minute",))
    result = _flat(ledger, data, "--processes", "2", "--workers", "2")
    assert result.code == 0, result.err + result.out
    assert result.out.count("processes: ") == 2, result.out  # the days, then the months
    assert _flat(single_ledger, single_data).code == 0
    assert_frame_equal(bars(work, data, "minute"), bars(work, single_data, "minute"))
    with sqlite3.connect(work / ledger) as db:
        runs = db.execute("SELECT id, units_settled FROM runs ORDER BY id").fetchall()
        reads = db.execute(
            "SELECT sum(attempts), count(*) FROM units WHERE dataset = 'minute_files'"
        ).fetchone()
        months = db.execute("SELECT count(*) FROM units WHERE dataset = 'minute'").fetchone()[0]
    assert len(runs) == 4, runs  # two children in each phase, a run each
    assert sum(settled for _, settled in runs) == len(DAYS) + months
    assert reads[0] == reads[1] == len(DAYS)  # each day read once
    assert _staged(work, data) == []
    assert SECRET not in result.out + result.err


def test_a_missing_day_file_fails_its_units_until_it_is_published(work, market, moto_endpoint, bucket):
    missing = D(2023, 5, 10)
    publish_market(moto_endpoint, bucket, market, FlatDefects(missing=(missing,)))
    ledger, data = plan(work, "flat", ("minute",))
    assert _flat(ledger, data).code == 1

    day = next(row for row in _units(ledger, "minute_files") if row["period_start"] == missing.isoformat())
    assert (day["state"], day["error_class"]) == ("failed", "missing_file")
    by_month = {(row["period"], row["state"], row["error_class"]) for row in _units(ledger, "minute")}
    assert {state for period, state, _ in by_month if period == "2023-05"} == {"failed"}
    assert {cls for period, _, cls in by_month if period == "2023-05"} == {"missing_file"}
    assert {state for period, state, _ in by_month if period != "2023-05"} <= {"done", "empty_confirmed"}

    publish_market(moto_endpoint, bucket, market)  # published late
    assert run_cli("retry", "--class", "missing_file", "--ledger", ledger).code == 0
    result = _flat(ledger, data, "--dataset", "minute")
    assert result.code == 0, result.err + result.out
    assert {row["state"] for row in _units(ledger, "minute")} <= {"done", "empty_confirmed"}


def test_a_day_file_not_published_yet_waits_and_a_later_run_reads_it(
    work, market, moto_endpoint, bucket, monkeypatch
):
    """The provider publishes a day's file around 11:00 US/Eastern the next day: run the
    morning after the plan's last session, that day's object is not in the bucket yet. Its
    units say so (`not_published`, not `missing_file`), and the next run, once the file is
    there, reads it without a `retry`."""
    last = DAYS[-1]  # Friday 2023-06-30
    publish_market(moto_endpoint, bucket, market, FlatDefects(missing=(last,)))
    ledger, data = plan(work, "flat", ("minute",))
    saturday = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(8, 0), tzinfo=ET)
    monkeypatch.setattr(publication, "now", lambda: saturday)

    early = _flat(ledger, data)
    assert early.code == 1, early.out
    assert "wait for day files not published yet" in early.out and SECRET not in early.out + early.err
    day = next(row for row in _units(ledger, "minute_files") if row["period_start"] == last.isoformat())
    assert (day["state"], day["error_class"]) == ("failed", "not_published")
    months = {(row["period"], row["state"], row["error_class"]) for row in _units(ledger, "minute")}
    assert {(state, cls) for period, state, cls in months if period == "2023-06"} == {
        ("failed", "not_published")
    }
    assert {state for period, state, _ in months if period != "2023-06"} <= {"done", "empty_confirmed"}

    publish_market(moto_endpoint, bucket, market)
    monkeypatch.setattr(publication, "now", lambda: saturday + dt.timedelta(hours=4))
    later = _flat(ledger, data)  # no retry: the run itself tries the waiting units again
    assert later.code == 0, later.err + later.out
    assert "units tried again that waited for a day file not published" in later.out
    assert {row["state"] for row in _units(ledger, "minute")} <= {"done", "empty_confirmed"}


@pytest.mark.parametrize(
    ("day", "now", "waiting"),
    [
        # Friday's file: published around 11:00 ET on Saturday, missing a day after that
        (dt.date(2023, 6, 30), dt.datetime(2023, 7, 1, 8, 0, tzinfo=ET), True),
        (dt.date(2023, 6, 30), dt.datetime(2023, 7, 2, 10, 59, tzinfo=ET), True),
        (dt.date(2023, 6, 30), dt.datetime(2023, 7, 2, 11, 0, tzinfo=ET), False),
        # across the autumn clock change: US/Eastern wall time, whatever the UTC offset
        (dt.date(2023, 11, 3), dt.datetime(2023, 11, 5, 15, 59, tzinfo=dt.timezone.utc), True),
        (dt.date(2023, 11, 3), dt.datetime(2023, 11, 5, 16, 0, tzinfo=dt.timezone.utc), False),
    ],
)
def test_a_day_file_is_waited_for_until_a_day_after_it_was_due(day, now, waiting):
    assert publication.not_published_yet(day, now) is waiting


def test_a_ticker_planned_while_the_months_are_built_is_never_built_empty(
    work, market, moto_endpoint, bucket, monkeypatch
):
    """`plan` from another terminal while a run builds the months: the new ticker's days
    were staged without it. Its months (and the period's others built after the plan) fail
    `days_outdated`, never `empty_confirmed`; the next run reads those days again and
    builds them, every bar of the new ticker's in place."""
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    build, planned = flat_units.build_units, []

    def plan_meanwhile(batch, job, flat, outcomes):  # type: ignore[no-untyped-def]
        if not planned:
            planned.append(write_universe(work / "grown.csv", [*UNIVERSE, "PLUG"]))
            grown = run_cli("plan", "--universe", "grown.csv", "--from", START, "--to", END,
                            "--dataset", "minute", "--ledger", ledger)  # fmt: skip
            assert grown.code == 0, grown.err
        return build(batch, job, flat, outcomes)

    monkeypatch.setattr(flat_units, "build_units", plan_meanwhile)
    first = _flat(ledger, data, "--workers", "1")
    monkeypatch.setattr(flat_units, "build_units", build)
    assert first.code == 1 and "run again to read those days and build them" in first.out, first.out
    plug = [row for row in _units(ledger, "minute") if row["ticker"] == "PLUG"]
    assert {(row["state"], row["error_class"]) for row in plug} == {("failed", "days_outdated")}

    second = _flat(ledger, data, "--workers", "1")
    assert second.code == 0, second.err + second.out
    assert "units built again whose day files were read for fewer tickers" in second.out
    published = sum(day_rows(market, "minute", day, ["PLUG"]).height for day in DAYS)
    plug = [row for row in _units(ledger, "minute") if row["ticker"] == "PLUG"]
    assert {row["state"] for row in plug} == {"done"} and sum(row["rows"] for row in plug) == published > 0
    assert run_cli("audit", "--deep", "--ledger", ledger, "--data", data).code == 0


@pytest.mark.parametrize("column", ["window_start", "close"])
def test_a_day_file_with_a_bar_missing_a_field_fails_never_stores_it(
    work, market, moto_endpoint, bucket, column
):
    """A universe row of a day file with its time or a price left empty: the day is
    `failed` (`bad_shape`), its months fail with it, nothing of it is stored; a corrected
    file read after `retry` fills them."""
    day = D(2023, 5, 10)
    publish_market(moto_endpoint, bucket, market, FlatDefects(blank=((day, "AAPL", column),)))
    ledger, data = plan(work, "flat", ("minute",))
    result = _flat(ledger, data, "--max-attempts", "1")
    assert result.code == 1, result.out
    read = next(row for row in _units(ledger, "minute_files") if row["period_start"] == day.isoformat())
    assert (read["state"], read["error_class"]) == ("failed", "bad_shape")
    assert column in read["last_error"]
    may = {
        (row["state"], row["error_class"]) for row in _units(ledger, "minute") if row["period"] == "2023-05"
    }
    assert may == {("failed", "bad_shape")}
    assert not (work / data / "minute_files" / "year=2023" / "month=05" / f"date={day}").exists()

    publish_market(moto_endpoint, bucket, market)  # corrected
    assert run_cli("retry", "--class", "bad_shape", "--ledger", ledger).code == 0
    again = _flat(ledger, data)
    assert again.code == 0, again.out
    assert {row["state"] for row in _units(ledger, "minute")} <= {"done", "empty_confirmed"}


def test_a_day_file_with_no_rows_fails_never_an_empty_day(work, market, moto_endpoint, bucket):
    """A trading day's object published with its header only: the whole market cannot have
    traded nothing, so the day is `failed` (`bad_shape`) and its months with it, never
    `empty_confirmed` with the months `done` without that session; the corrected file read
    after `retry` fills them."""
    day = D(2023, 5, 10)
    publish_market(moto_endpoint, bucket, market, FlatDefects(emptied=(day,)))
    ledger, data = plan(work, "flat", ("minute",))
    assert _flat(ledger, data).code == 1
    read = next(row for row in _units(ledger, "minute_files") if row["period_start"] == day.isoformat())
    assert (read["state"], read["error_class"]) == ("failed", "bad_shape") and "no rows" in read["last_error"]
    may = {
        (row["state"], row["error_class"]) for row in _units(ledger, "minute") if row["period"] == "2023-05"
    }
    assert may == {("failed", "bad_shape")}

    publish_market(moto_endpoint, bucket, market)  # corrected
    assert run_cli("retry", "--class", "bad_shape", "--ledger", ledger).code == 0
    assert _flat(ledger, data).code == 0
    assert {row["state"] for row in _units(ledger, "minute")} <= {"done", "empty_confirmed"}


def test_a_replaced_day_file_makes_its_units_stale_until_retried(work, market, moto_endpoint, bucket):
    from flat_support import OTHERS, UNIVERSE

    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    assert _flat(ledger, data, "--dataset", "minute").code == 0
    before = bars(work, data, "minute")
    assert run_cli("audit", "--etags", "--ledger", ledger, "--data", data).code == 0

    day = D(2023, 5, 10)
    replace_day(s3_client(moto_endpoint), bucket, market, "minute", day, UNIVERSE + OTHERS, "AAPL")
    audit = run_cli("audit", "--etags", "--ledger", ledger, "--data", data)
    assert audit.code == 1, audit.out
    assert "1 replaced since read" in audit.out and "stale flat files" in audit.out

    retried = run_cli("retry", "--stale", "--ledger", ledger)
    assert retried.code == 0, retried.err
    pending = {(row["dataset"], row["period"]) for row in _units(ledger, "minute") + _units(ledger, "minute_files")
               if row["state"] == "pending"}  # fmt: skip
    assert ("minute_files", "2023-05-10") in pending
    assert {period for dataset, period in pending if dataset == "minute"} == {"2023-05"}

    assert _flat(ledger, data, "--dataset", "minute").code == 0
    after = bars(work, data, "minute")
    joined = after.join(before, on=["ticker", "timestamp"], suffix="_old")
    assert joined.height == before.height == after.height
    changed = joined.filter(pl.col("close") != pl.col("close_old"))
    assert changed.get_column("ticker").to_list() == ["AAPL"]
    assert run_cli("audit", "--etags", "--ledger", ledger, "--data", data).code == 0


def test_bars_withdrawn_by_a_replaced_day_file_leave_the_folder_too(work, market, moto_endpoint, bucket):
    """The provider replaces a day's file without a ticker's rows: that ticker's unit, built
    again (`retry --stale`), has no bars now and settles `empty_confirmed`; its old file
    leaves the dataset's folder, so a read of the folder (`data/minute/**`) agrees with the
    ledger, and is kept aside in `.quarantine/` (found by a review: it was deleted), the
    run saying where."""
    day = D(2023, 5, 10)
    publish_market(moto_endpoint, bucket, market)
    write_universe(work / "universe.csv", UNIVERSE)
    assert run_cli("plan", "--universe", "universe.csv", "--from", day, "--to", day, "--dataset", "minute",
                   "--ledger", "one.db").code == 0  # fmt: skip
    assert _flat("one.db", "one").code == 0
    tiny = next(row for row in _units("one.db", "minute") if row["ticker"] == "TINY")
    assert tiny["state"] == "done" and (work / "one" / tiny["file_path"]).exists()

    rows = day_rows(market, "minute", day, UNIVERSE).filter(pl.col("ticker") != "TINY")
    s3_client(moto_endpoint).put_object(Bucket=bucket, Key=object_key("minute", day), Body=gzip_csv(rows))
    assert run_cli("audit", "--etags", "--ledger", "one.db", "--data", "one").code == 1
    before = (work / "one" / tiny["file_path"]).read_bytes()
    assert run_cli("retry", "--stale", "--ledger", "one.db").code == 0
    built = _flat("one.db", "one")
    assert built.code == 0, built.err

    again = next(row for row in _units("one.db", "minute") if row["ticker"] == "TINY")
    assert (again["state"], again["file_path"]) == ("empty_confirmed", None)
    assert not (work / "one" / tiny["file_path"]).exists()
    (kept,) = (work / "one" / ".quarantine").rglob("*.parquet")
    assert kept.read_bytes() == before and kept.as_posix().endswith("/" + tiny["file_path"])
    assert kept.relative_to(work).as_posix() in built.err.replace("\\", "/"), built.err
    stored = pl.scan_parquet(work / "one" / "minute" / "**" / "*.parquet", hive_partitioning=False).collect()
    assert stored.height and "TINY" not in stored.get_column("ticker").to_list()
    assert run_cli("audit", "--deep", "--ledger", "one.db", "--data", "one").code == 0


def test_a_staged_day_read_again_with_none_of_its_tickers_is_deleted_not_kept(
    work, market, moto_endpoint, bucket
):
    """A staged day is a copy of the provider's file (the bucket keeps it, and a month that
    needs it again reads it from there): read again with none of the universe's rows now,
    its staged file is deleted, not kept aside in `.quarantine/` (where month files go)."""
    day = D(2023, 5, 10)
    publish_market(moto_endpoint, bucket, market)
    write_universe(work / "universe.csv", ["TINY"])
    assert run_cli("plan", "--universe", "universe.csv", "--from", day, "--to", day, "--dataset", "minute",
                   "--ledger", "one.db").code == 0  # fmt: skip
    first = _flat("one.db", "one", "--max-units", "1")  # the day staged, its month not built
    assert first.code == 1 and "not complete: 1 pending" in first.out, first.out
    (staged,) = _units("one.db", "minute_files")
    assert staged["state"] == "done" and (work / "one" / staged["file_path"]).exists()

    rows = day_rows(market, "minute", day, UNIVERSE).filter(pl.col("ticker") != "TINY")
    s3_client(moto_endpoint).put_object(Bucket=bucket, Key=object_key("minute", day), Body=gzip_csv(rows))
    assert run_cli("audit", "--etags", "--ledger", "one.db", "--data", "one").code == 1
    assert run_cli("retry", "--stale", "--ledger", "one.db").code == 0
    assert _flat("one.db", "one").code == 0

    (again,) = _units("one.db", "minute_files")
    assert (again["state"], again["file_path"]) == ("empty_confirmed", None)
    assert not (work / "one" / staged["file_path"]).exists()
    assert not (work / "one" / ".quarantine").exists()


def test_only_unadjusted_ledgers_read_flat_files(work, market, moto_endpoint, bucket):
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat")
    refused = run_cli("run", "--source", "flatfiles", "--ledger", ledger, "--data", data)
    assert refused.code == 2 and "--unadjusted" in refused.err and len(refused.err.strip().splitlines()) == 1
    with sqlite3.connect(ledger) as db:  # a ledger that already holds adjusted bars
        db.execute("INSERT INTO settings (key, value) VALUES ('adjusted', 'true')")
    refused = _flat(ledger, data)
    assert refused.code == 2 and "adjusted bars" in refused.err, refused.err
    assert {row["state"] for row in _units(ledger, "minute")} == {"pending"}

    # a raw ledger with a data folder of adjusted bars: refused before a day is staged into it
    raw, _ = plan(work, "raw")
    (work / data).mkdir(exist_ok=True)
    (work / data / "polyledger-data.json").write_text('{"adjusted": true}\n', encoding="utf-8")
    refused = _flat(raw, data)
    assert refused.code == 2 and "holds adjusted bars (polyledger-data.json)" in refused.err, refused.err
    assert not (work / data / "minute_files").exists() and not _units(raw, "minute_files")


class _Denying(BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request 403, keeping what each one carried."""

    seen: list[str] = []

    def _deny(self) -> None:
        type(self).seen.append(f"{self.requestline} {dict(self.headers)}")
        body = (
            b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = _deny

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_403_is_one_line_naming_the_causes_without_secrets(work, denying, monkeypatch):
    use_bucket(monkeypatch, denying, "flatfiles")
    ledger, data = plan(work, "flat")
    result = _flat(ledger, data)
    assert result.code == 1
    line = result.err.strip()
    assert len(line.splitlines()) == 1, result.err
    assert "403" in line and "wrong keys" in line and "plan without flat files" in line and "endpoint" in line
    assert SECRET not in result.err + result.out and API_KEY not in result.err + result.out
    assert _Denying.seen and not any(API_KEY in request or SECRET in request for request in _Denying.seen)
    assert {row["state"] for row in _units(ledger, "minute")} == {"pending"}


def test_a_day_read_again_with_another_etag_leaves_units_built_before_stale(
    work, market, moto_endpoint, bucket
):
    from flat_support import OTHERS, UNIVERSE

    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    assert _flat(ledger, data).code == 0
    replace_day(s3_client(moto_endpoint), bucket, market, "minute", D(2023, 5, 10), UNIVERSE + OTHERS, "AAPL")
    # a ticker planned since: every day is staged again for it, and 2023-05-10 is read anew
    write_universe(work / "universe.csv", [*UNIVERSE, "SIRI"])
    assert run_cli("plan", "--universe", "universe.csv", "--from", "2023-04-01", "--to", "2023-06-30",
                   "--ledger", ledger).code == 0  # fmt: skip
    assert _flat(ledger, data).code == 0
    audit = run_cli("audit", "--ledger", ledger, "--data", data)  # no listing: the re-read told it
    assert audit.code == 1 and "stale flat files" in audit.out, audit.out
    stale = {(row.ticker, row.period) for row in _stale(ledger)}
    may = {(row["ticker"], row["period"]) for row in _units(ledger, "minute") if row["period"] == "2023-05"}
    assert stale == may - {("SIRI", "2023-05")} and ("AAPL", "2023-05") in stale  # SIRI's was built after
    assert run_cli("retry", "--stale", "--ledger", ledger).code == 0
    assert _flat(ledger, data).code == 0
    assert run_cli("audit", "--ledger", ledger, "--data", data).code == 0


def _stale(ledger: str) -> list:
    from polyledger.ledger import Ledger

    with Ledger(ledger, create=False) as opened:
        return opened.stale_flat("minute", "minute_files")


def test_the_nightly_sync_never_claims_the_flat_file_day_units(work, market, server, moto_endpoint, bucket):
    """A ledger whose day units a flat-file run planned (then stopped): `sync`, a run of the
    API, leaves them pending (nothing of the API serves them: claimed, they failed
    `invalid_ticker` and failed every month built from them), and the flat run after it
    reads them."""
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    with Ledger(work / ledger, create=False) as book:
        book.claim_setting("adjusted", "false")
        assert prepare(book, ("minute",)).days_added == len(DAYS)  # what a flat run plans first
    synced = run_cli("sync", "--now", "2023-06-30T22:30:00-04:00", "--base-url", server.url,
                     "--ledger", ledger, "--data", data)  # fmt: skip
    # exit 3: the months are complete (fetched from the API), the day units still pending
    assert synced.code == 3 and "minute: COMPLETE" in synced.out, synced.err + synced.out
    assert {(row["state"], row["attempts"]) for row in _units(ledger, "minute_files")} == {("pending", 0)}
    assert _flat(ledger, data).code == 0
    assert {row["state"] for row in _units(ledger, "minute_files")} <= {"done", "empty_confirmed"}


def test_mixed_routes_reconcile_bar_for_bar(work, market, server, moto_endpoint, bucket, monkeypatch):
    publish_market(moto_endpoint, bucket, market)
    ledger, data = plan(work, "mixed", ("minute",))
    rest = run_cli("run", "--unadjusted", "--base-url", server.url, "--max-units", "4", "--ledger", ledger,
                   "--data", data)  # fmt: skip
    assert rest.code == 1 and "4 done" in rest.out, rest.out  # some months from the API ...
    assert _flat(ledger, data).code == 0  # ... the others from flat files
    assert {row["source"] for row in _units(ledger, "minute")} == {"rest", "flatfiles"}
    # a REST run leaves the day units alone (they are read from flat files only)
    assert run_cli("retry", "--class", "all", "--ledger", ledger).code == 0
    with sqlite3.connect(ledger) as db:
        db.execute(
            "UPDATE units SET state = 'pending' WHERE dataset = 'minute_files' AND period = '2023-05-10'"
        )
    again = run_cli("run", "--unadjusted", "--base-url", server.url, "--ledger", ledger, "--data", data)
    assert again.code == 0, again.out  # the pending day unit is out of its scope ...
    day = next(row for row in _units(ledger, "minute_files") if row["period"] == "2023-05-10")
    assert (day["state"], day["attempts"]) == ("pending", 1)  # ... never claimed by it
    assert _flat(ledger, data).code == 0

    monkeypatch.setenv("POLYGON_BASE_URL", server.url)
    audit = run_cli("audit", "--reconcile", "100", "--ledger", ledger, "--data", data)
    assert audit.code == 0, audit.out
    lines = [line for line in audit.out.splitlines() if line.startswith("reconcile ")]
    assert any("(rest)" in line for line in lines) and any("(flatfiles)" in line for line in lines)
    assert all(line.endswith("0 only stored, 0 only the other route, 0 different") for line in lines), lines
    # the REST units' staged days were deleted: without the bucket's keys they are skipped,
    # never compared with days taken as empty
    with monkeypatch.context() as keyless:
        keyless.delenv("POLYLEDGER_FLATFILES_SECRET")
        audit = run_cli("audit", "--reconcile", "100", "--ledger", ledger, "--data", data)
    assert audit.code == 0, audit.out
    lines = [line for line in audit.out.splitlines() if line.startswith("reconcile ")]
    assert lines and not any("(rest)" in line for line in lines), lines

    unit = next(row for row in _units(ledger, "minute") if row["source"] == "flatfiles" and row["rows"])
    path = work / data / unit["file_path"]
    stored = pl.read_parquet(path)
    stored.with_columns(
        close=pl.when(pl.int_range(pl.len()) == 7).then(pl.col("close") + 1).otherwise("close")
    ).write_parquet(path)
    audit = run_cli("audit", "--reconcile", "100", "--ledger", ledger, "--data", data)
    assert audit.code == 1
    assert f"reconcile minute {unit['ticker']} {unit['period']} (flatfiles)" in audit.out
    assert "0 only stored, 0 only the other route, 1 different" in audit.out
    # neither key: no unit can be compared, and the audit says so and why (exit 1), never
    # the silence of all matched
    with monkeypatch.context() as keyless:
        keyless.delenv("POLYLEDGER_FLATFILES_SECRET")
        keyless.delenv("POLYGON_API_KEY")
        audit = run_cli("audit", "--reconcile", "3", "--ledger", ledger, "--data", data)
    assert audit.code == 1, audit.out
    summary = next(line for line in audit.out.splitlines() if line.startswith("reconcile: "))
    assert summary.startswith("reconcile: 0 of 3 units compared; "), summary
    assert "filled from flat files, no API key to ask" in summary
    assert "filled from the API, their staged days deleted and no flat-file keys" in summary


def test_reconcile_of_a_rest_only_download_says_nothing_was_compared(work, server, monkeypatch):
    """`audit --reconcile N` on a download from the API alone, no day files read: not one
    unit can be compared. One line says so and why, and the audit exits 1 (nothing was
    verified), where it used to print nothing and exit 0."""
    monkeypatch.delenv("POLYLEDGER_FLATFILES_KEY_ID", raising=False)
    monkeypatch.delenv("POLYLEDGER_FLATFILES_SECRET", raising=False)
    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-04-01", "--to", "2023-05-31").code == 0
    assert run_cli("run", "--unadjusted", "--base-url", server.url).code == 0
    assert run_cli("audit").code == 0
    audit = run_cli("audit", "--reconcile", "3")
    assert audit.code == 1, audit.out
    assert (
        "reconcile: 0 of 3 units compared; 2 could not be: 2 filled from the API, their days not all "
        "read from flat files (2 done minute/day units in all)"
    ) in audit.out
    as_json = json.loads(run_cli("audit", "--reconcile", "3", "--json").out)
    assert as_json["exit_code"] == 1 and as_json["reconcile_skipped"] == {"days_unread": 2}


def test_the_flat_file_route_on_a_postgresql_ledger(work, market, moto_endpoint, bucket, pg_url):
    """The same route on PostgreSQL: claims of a period's units, the flat_files table, staleness."""
    from flat_support import OTHERS, UNIVERSE

    publish_market(moto_endpoint, bucket, market)
    write_universe(work / "universe.csv", UNIVERSE)
    assert run_cli("plan", "--universe", "universe.csv", "--from", "2023-04-01", "--to", "2023-06-30",
                   "--ledger", pg_url).code == 0  # fmt: skip
    result = _flat(pg_url, "data", "--workers", "2")
    assert result.code == 0, result.err + result.out
    replace_day(s3_client(moto_endpoint), bucket, market, "minute", D(2023, 5, 10), UNIVERSE + OTHERS, "AAPL")
    assert run_cli("audit", "--etags", "--ledger", pg_url, "--data", "data").code == 1
    assert run_cli("retry", "--stale", "--ledger", pg_url).code == 0
    again = _flat(pg_url, "data")
    assert again.code == 0, again.err + again.out
    # May's deleted staged days read again for the month queued, then deleted again
    assert f"day files read again: {len([day for day in DAYS if day.month == 5]) - 1}" in again.out, again.out
    assert "staged day files deleted" in again.out and _staged(work, "data") == []
    assert run_cli("audit", "--etags", "--deep", "--ledger", pg_url, "--data", "data").code == 0


# --- found by a review (2026-12-01, evening) ------------------------------------------

MAY = trading_days(dt.date(2023, 5, 1), dt.date(2023, 5, 31))
SMALL = ["AAPL", "TINY"]


def _bucket(monkeypatch: pytest.MonkeyPatch, endpoint: str, request: pytest.FixtureRequest) -> str:
    import hashlib

    name = f"rvw-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]}"
    use_bucket(monkeypatch, endpoint, name)
    return name


def _plan_may(work, tickers, ledger="l.db", dataset="minute") -> None:  # type: ignore[no-untyped-def]
    write_universe(work / "u.csv", tickers)
    result = run_cli(
        "plan", "--universe", "u.csv", "--from", "2023-05-01", "--to", "2023-05-31",
        "--dataset", dataset, "--ledger", ledger,
    )  # fmt: skip
    assert result.code == 0, result.err


def test_max_units_runs_burn_the_months_attempts_and_fail_them_days_unread(
    work, market, moto_endpoint, monkeypatch, request
):
    """`--max-units N` stops phase 1 (the days) with outcome "finished", so phase 2 runs with
    a fresh budget of N and claims ticker-months whose days are still unread: each is
    requeued `days_unread`, an attempt spent. Three such runs (the default --max-attempts)
    fail the months for good; the full run after that leaves them failed."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    publish(s3_client(moto_endpoint), bucket, market, MAY, SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    for _ in range(3):  # a user sampling the route a few units at a time
        sample = _flat("l.db", "data", "--max-units", "3")
        assert "ticker units not built this run (" in sample.out and "run again to go on" in sample.out, (
            sample.out
        )
    claimed = sum(1 for row in _units("l.db", "minute_files") if row["state"] == "done")
    assert claimed == 9  # three runs of 3 units: the budget counts both phases
    full = _flat("l.db", "data")
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (months, full.out)


def test_an_unparsable_value_in_another_symbols_row_is_called_a_bug_and_fails_the_day(
    work, market, moto_endpoint, monkeypatch, request
):
    """docs/flatfiles.md: "Rows of other symbols are not checked (never stored)". But one
    unparsable value anywhere in the day file (here SIRI's `transactions` written `12.0`, not
    in the universe) makes polars' CSV scan raise ComputeError inside `read_day`
    (polyledger/flatfiles/stage.py `scan.select(pl.len())`/`filter().collect()`), which is no
    FetchError: the day and its months fail `internal:ComputeError`, the class of a bug in
    polyledger, although AAPL's and TINY's rows are fine."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, [*SMALL, "SIRI"], kinds=("minute",))
    day = dt.date(2023, 5, 10)
    rows = day_rows(market, "minute", day, [*SMALL, "SIRI"])
    text = rows.write_csv()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("SIRI,"))
    fields = lines[at].split(",")
    fields[-1] = f"{fields[-1]}.0"  # transactions "12.0": another symbol's row, never stored
    lines[at] = ",".join(fields)
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=bucket, Key=object_key("minute", day), Body=body)
    _plan_may(work, SMALL)
    result = _flat("l.db", "data", "--max-attempts", "1")
    read = next(row for row in _units("l.db", "minute_files") if row["period_start"] == day.isoformat())
    months = {(row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert not str(read["error_class"] or "").startswith("internal:"), (
        read["error_class"],
        read["last_error"],
    )
    assert months == {("done", None)}, (months, result.out)


def test_an_unparsable_value_in_a_universe_row_fails_the_day_bad_shape(
    work, market, moto_endpoint, monkeypatch, request
):
    """The same value in a row of the universe's: the day is `bad_shape` (a data class, one
    line), its months with it; nothing of it stored."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, SMALL, kinds=("minute",))
    day = dt.date(2023, 5, 10)
    lines = day_rows(market, "minute", day, SMALL).write_csv().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("AAPL,"))
    lines[at] = lines[at] + ".5"  # transactions "12.5"
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=bucket, Key=object_key("minute", day), Body=body)
    _plan_may(work, SMALL)
    result = _flat("l.db", "data", "--max-attempts", "1")
    assert result.code == 1
    read = next(row for row in _units("l.db", "minute_files") if row["period_start"] == day.isoformat())
    assert (read["state"], read["error_class"]) == ("failed", "bad_shape")
    assert read["last_error"].startswith(f"the flat file of {day} cannot be read as the documented CSV")
    assert "\n" not in read["last_error"]
    assert {(row["state"], row["error_class"]) for row in _units("l.db", "minute")} == {
        ("failed", "bad_shape")
    }


def test_a_bucket_name_with_a_space_is_two_lines_of_error(work, moto_endpoint, monkeypatch):
    """Bad input is one clear line: a POLYLEDGER_FLATFILES_BUCKET botocore refuses is
    wrapped as `InputError(f"flat files: cannot list ...: {error}")` in
    FlatFilesSource.probe (polyledger/flatfiles/source.py:137), and botocore's
    ParamValidationError text holds a newline and two regexes."""
    use_bucket(monkeypatch, moto_endpoint, "my flatfiles")
    _plan_may(work, SMALL)
    result = _flat("l.db", "data")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1, result.err


@pytest.mark.parametrize("narrowed", [("--ticker", "AAPL"), ("--dataset", "minute")])
def test_retrying_a_month_failed_for_a_missing_day_never_reads_the_day_again(
    work, market, moto_endpoint, monkeypatch, request, narrowed
):
    """A month failed `missing_file`, its day since published: `retry --class missing_file`
    narrowed to the ticker (or dataset) the user cares about puts the month back, but the
    failed day unit (ticker '*', dataset minute_files) stays failed, and `prepare`
    (polyledger/flatfiles/prepare.py) only requeues days that were pruned or staged for
    another universe (and `not_published` ones): `unread` (transpose.py) fails the month
    again with `missing_file` at once, the bucket never asked."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    hole = dt.date(2023, 5, 10)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, [day for day in MAY if day != hole], SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    assert _flat("l.db", "data").code == 1
    assert {row["error_class"] for row in _units("l.db", "minute")} == {"missing_file"}

    publish(s3, bucket, market, [hole], SMALL, kinds=("minute",))  # published late
    assert run_cli("retry", "--class", "missing_file", *narrowed, "--ledger", "l.db").code == 0
    result = _flat("l.db", "data")
    aapl = next(row for row in _units("l.db", "minute") if row["ticker"] == "AAPL")
    assert (aapl["state"], aapl["error_class"]) == ("done", None), (dict(aapl), result.out)


def test_reconcile_compares_a_rest_month_with_days_staged_without_its_ticker(
    work, market, server, moto_endpoint, monkeypatch, request
):
    """`rebuild_from_flat_files` (polyledger/flatfiles/reconcile.py) takes a REST unit's bars
    from the staged day files whatever universe they were staged for (`flat_files.universe`
    is never looked at): a ticker planned after the days were staged, and filled from the
    API, is "rebuilt" as no bars, and `audit --reconcile` reports every one of its bars as
    differing (exit 1) although both routes agree."""
    from polyledger.flatfiles import route
    from polyledger.flatfiles.prune import Pruned

    bucket = _bucket(monkeypatch, moto_endpoint, request)
    publish(s3_client(moto_endpoint), bucket, market, MAY, [*SMALL, "PLUG"], kinds=("minute",))
    _plan_may(work, SMALL)
    with monkeypatch.context() as patched:  # stopped (kill -9) between the build and the prune
        patched.setattr(route, "prune_staged", lambda *args: Pruned(0, 0))
        assert _flat("l.db", "data").code == 0
    _plan_may(work, [*SMALL, "PLUG"])  # a ticker planned since, filled from the API
    rest = run_cli("run", "--unadjusted", "--base-url", server.url, "--ledger", "l.db", "--data", "data")
    assert rest.code == 0, rest.err + rest.out
    plug = next(row for row in _units("l.db", "minute") if row["ticker"] == "PLUG")
    assert (plug["state"], plug["source"]) == ("done", "rest") and plug["rows"] > 100

    monkeypatch.setenv("POLYGON_BASE_URL", server.url)
    audit = run_cli("audit", "--reconcile", "100", "--ledger", "l.db", "--data", "data")
    lines = [line for line in audit.out.splitlines() if line.startswith("reconcile minute PLUG")]
    assert lines and lines[0].endswith("0 only stored, 0 only the other route, 0 different"), lines


def test_a_stop_between_deleting_a_staged_day_and_forgetting_it_fails_the_next_rebuild(
    work, market, moto_endpoint, monkeypatch, request
):
    """prune.py deletes a staged day's file, then the ledger forgets its path; a stop in
    between leaves a `done` day whose `file_path` names a deleted file. The docs say the next
    run heals it, but the next run's prune comes *after* its build: a month of that period
    queued again meanwhile (here `retry --stale` for another replaced day) passes `unread`
    (transpose.py: done with a file_path) and `prepare` does not read the day again
    (`pruned_needed` wants file_path NULL), so the batch's scan of the deleted file raises
    and every month of the batch fails `internal:...` (the class of a polyledger bug)."""
    from polyledger.flatfiles import route
    from polyledger.flatfiles.prune import Pruned
    from polyledger.testing.flatfiles import replace_day

    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    with monkeypatch.context() as patched:
        patched.setattr(route, "prune_staged", lambda *args: Pruned(0, 0))
        assert _flat("l.db", "data").code == 0
    staged = sorted((work / "data" / "minute_files").rglob("*.parquet"))
    staged[0].unlink()  # the prune deleted this one, then was killed before the ledger forgot it

    replace_day(s3, bucket, market, "minute", dt.date(2023, 5, 10), SMALL, "AAPL")
    assert run_cli("audit", "--etags", "--ledger", "l.db", "--data", "data").code == 1
    assert run_cli("retry", "--stale", "--ledger", "l.db").code == 0
    first = _flat("l.db", "data")  # finds the file gone: the day forgotten, the months wait for it
    assert first.code == 1 and "need day files read again" in first.out, first.out
    assert {row["error_class"] for row in _units("l.db", "minute")} == {"days_outdated"}
    result = _flat("l.db", "data")  # reads the day again, builds the months
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (months, result.out)


def test_a_year_is_staged_built_and_pruned_before_the_next_years_days_are_read(
    work, market, moto_endpoint, monkeypatch, request
):
    """The staged days on disk are at most a year's: a plan over two years has its first
    year's days read, its months built and those days deleted before any day of the second
    year is read (a whole plan's staged days take about what its bars take)."""
    from polyledger.fetch.runner import Run
    from polyledger.flatfiles.route import run_flatfiles

    bucket = _bucket(monkeypatch, moto_endpoint, request)
    days = trading_days(D(2022, 12, 1), D(2023, 1, 31))
    publish(s3_client(moto_endpoint), bucket, market, days, SMALL, kinds=("minute",))
    write_universe(work / "u.csv", SMALL)
    planned = run_cli(
        "plan", "--universe", "u.csv", "--from", "2022-12-01", "--to", "2023-01-31", "--dataset", "minute",
        "--ledger", "l.db",
    )  # fmt: skip
    assert planned.code == 0, planned.err
    seen: list[tuple[int, tuple[str, ...], list[str]]] = []  # (year, datasets, staged days on disk)

    def execute(run: Run):  # type: ignore[no-untyped-def]
        staged = sorted(path.as_posix() for path in (work / "data" / "minute_files").rglob("*.parquet"))
        seen.append((run.options.window[0].year, run.options.datasets, staged))
        return run.execute()

    report = run_flatfiles(execute, "l.db", "data", datasets=("minute",), workers=2)
    assert report.ok and report.years == 2, report
    assert [(year, names) for year, names, _ in seen] == [
        (2022, ("minute_files",)), (2022, ("minute",)), (2023, ("minute_files",)), (2023, ("minute",)),
    ]  # fmt: skip
    december = [day for day in days if day.year == 2022]
    # the year's days staged when its months are built, and only those
    assert len(seen[1][2]) == len(december) and all("2022" in path for path in seen[1][2])
    assert seen[2][2] == []  # and deleted before the next year's are read
    assert report.pruned is not None and report.pruned.deleted == len(days)
    months = {(row["ticker"], row["period"], row["state"]) for row in _units("l.db", "minute")}
    assert months == {(t, p, "done") for t in SMALL for p in ("2022-12", "2023-01")}
    assert run_cli("audit", "--deep", "--ledger", "l.db", "--data", "data").code == 0


def test_units_a_dead_run_left_running_are_built_by_the_first_flat_run(
    work, market, moto_endpoint, monkeypatch, request
):
    """A killed run's units (running, leases expired) are taken back before `prepare` plans
    the days (flatfiles/route.py): their days are planned and read, and they are built in
    this very run, not failed `days_outdated` for the next one."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    publish(s3_client(moto_endpoint), bucket, market, MAY, SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    with Ledger("l.db") as ledger:  # a REST run that claimed both months, then was killed
        assert len(ledger.claim("dead-run", lease_seconds=0.01, limit=10, datasets=["minute"])) == 2
    result = _flat("l.db", "data")
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (months, result.out)
    assert result.code == 0, result.out


def _fail_days_unread(ledger: str, period: str) -> None:
    """The period's minute units failed `days_unread`, attempts spent (what earlier versions
    left of units queued after their run planned the days)."""
    with sqlite3.connect(ledger) as db:
        db.execute(
            "UPDATE units SET state = 'failed', error_class = 'days_unread', attempts = 3 "
            "WHERE dataset = 'minute' AND period = ?",
            (period,),
        )


def test_units_failed_days_unread_for_days_never_planned_are_queued_again(work):
    """`prepare` queues again the units failed `days_unread` with a day that has no day unit
    (no run would plan it for a failed unit) and plans their days; one whose days all have
    units (read, or being read elsewhere) is left failed, for `retry`."""
    write_universe(work / "u.csv", SMALL)
    planned = run_cli(
        "plan", "--universe", "u.csv", "--from", "2023-05-01", "--to", "2023-06-30", "--dataset", "minute",
        "--ledger", "l.db",
    )  # fmt: skip
    assert planned.code == 0, planned.err
    june = trading_days(D(2023, 6, 1), D(2023, 6, 30))
    with Ledger("l.db") as ledger:  # June's days planned (by the run whose build failed June)
        ledger.add_units(
            PlannedUnit("minute_files", MARKET, day, day, period_name=day.isoformat()) for day in june
        )
    _fail_days_unread("l.db", "2023-05")
    _fail_days_unread("l.db", "2023-06")
    with Ledger("l.db") as ledger:
        prepared = prepare(ledger, ["minute"])
    assert prepared.unplanned_again == 2 and prepared.days_added == len(MAY), prepared
    states = {(row["period"], row["state"], row["attempts"]) for row in _units("l.db", "minute")}
    assert states == {("2023-05", "pending", 0), ("2023-06", "failed", 3)}, states


def test_a_month_failed_days_unread_for_days_never_planned_is_built_by_the_next_flat_run(
    work, market, moto_endpoint, monkeypatch, request
):
    """A ledger left with months failed `days_unread` and no day units for them: the next
    flat run queues them again, reads their days and builds them, and says so."""
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    publish(s3_client(moto_endpoint), bucket, market, MAY, SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    _fail_days_unread("l.db", "2023-05")
    result = _flat("l.db", "data")
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (months, result.out)
    assert result.code == 0, result.out
    assert "units failed days_unread for day files never planned, built again: 2" in result.out, result.out


def _cli_elsewhere(work, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """The CLI in another process (another terminal or host on the same ledger), waited for."""
    return subprocess.run(
        cli_command(*args), cwd=work, env=python_env(), capture_output=True, text=True, timeout=120
    )


def test_a_month_built_from_a_day_read_again_meanwhile_with_another_etag_is_stale(
    work, market, moto_endpoint, monkeypatch, request
):
    """A run builds May's units from the staged days it scanned; meanwhile another terminal
    finds 2023-05-10 replaced (`audit --etags`), queues it (`retry --stale`) and reads it
    again: the day's `changed_at` is set then. The first run then settles AAPL's month
    from the OLD day file. Its `fetched_at` was the settle's time, after `changed_at`, so
    the month was never called stale and `audit --etags` exited 0 with the replaced bars
    stored (a review, 2026-12-02). A month built from flat files is fetched as of the
    snapshot of its days its build read, so a day read again after it makes it stale."""
    from polyledger.flatfiles import transpose

    hit = D(2023, 5, 10)
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, SMALL, kinds=("minute",))
    _plan_may(work, SMALL)
    original = transpose.staged_bars

    def day_read_again(etag: str) -> bool:
        with sqlite3.connect(work / "l.db") as db:
            row = db.execute(
                "SELECT u.state, f.etag FROM units u JOIN flat_files f ON f.unit_id = u.id "
                "WHERE u.dataset = 'minute_files' AND u.period_start = ?",
                (hit.isoformat(),),
            ).fetchone()
        return row == ("done", etag)

    def scanned_then_replaced_elsewhere(job, files, tickers):  # type: ignore[no-untyped-def]
        found = original(job, files, tickers)  # the old staged days, read
        if not elsewhere:
            etag = replace_day(s3, bucket, market, "minute", hit, SMALL, "AAPL")
            seen = _cli_elsewhere(work, "audit", "--etags", "--ledger", "l.db", "--data", "data")
            assert seen.returncode == 1, seen.stdout  # the replaced day seen
            assert _cli_elsewhere(work, "retry", "--stale", "--ledger", "l.db").returncode == 0
            # the other terminal's run reads the queued day again (then waits for this
            # run's units, which it cannot build while they are held here)
            command = cli_command(
                "run", "--source", "flatfiles", "--unadjusted", "--ledger", "l.db", "--data", "data"
            )
            elsewhere.append(
                subprocess.Popen(
                    command, cwd=work, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            assert wait_for(lambda: day_read_again(etag), timeout=120), "the day was not read again"
        return found

    elsewhere: list[subprocess.Popen] = []
    monkeypatch.setattr(transpose, "staged_bars", scanned_then_replaced_elsewhere)
    try:
        first = _flat("l.db", "data", "--workers", "1")
    finally:
        monkeypatch.setattr(transpose, "staged_bars", original)
        for other in elsewhere:
            try:
                other.wait(timeout=120)
            finally:
                if other.poll() is None:
                    other.kill()
    assert elsewhere, first.out
    aapl = next(row for row in _units("l.db", "minute") if row["ticker"] == "AAPL")
    assert aapl["state"] == "done", dict(aapl)
    stored = pl.read_parquet(work / "data" / aapl["file_path"])
    published = day_rows(market, "minute", hit, ["AAPL"])
    first_bar = int(published.get_column("window_start")[0]) // 1_000_000
    close = stored.filter(pl.col("timestamp").dt.epoch("ms") == first_bar).get_column("close")[0]
    new_close = float(published.get_column("close")[0]) + 1  # what replace_day published
    audit = run_cli("audit", "--etags", "--ledger", "l.db", "--data", "data")
    # either the month holds the file the bucket has now, or the ledger says it is stale
    assert close == new_close or audit.code == 1, (close, new_close, audit.out)


def test_an_invalid_utf8_byte_in_another_symbols_row_leaves_the_day_to_the_universe(
    work, market, moto_endpoint, monkeypatch, request
):
    """Rows of other symbols are not checked (never stored): one byte that is not UTF-8 in
    another symbol's row made both scans of `read_day` raise ("invalid utf-8 sequence"),
    the whole day `bad_shape`, every universe month of May failed with it (a review,
    2026-12-02). The file is read lossily: universe tickers are ASCII (TICKER_RE)."""
    hit = D(2023, 5, 10)
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, [*SMALL, "SIRI"], kinds=("minute",))
    lines = day_rows(market, "minute", hit, [*SMALL, "SIRI"]).write_csv().encode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(b"SIRI,"))
    lines[at] = b"S\xffRI" + lines[at][4:]  # another symbol's name, one byte damaged
    s3.put_object(Bucket=bucket, Key=object_key("minute", hit), Body=gzip.compress(b"\n".join(lines) + b"\n"))
    _plan_may(work, SMALL)
    result = _flat("l.db", "data", "--max-attempts", "1")
    day = next(row for row in _units("l.db", "minute_files") if row["period_start"] == hit.isoformat())
    months = {(row["ticker"], row["state"], row["error_class"]) for row in _units("l.db", "minute")}
    assert months == {("AAPL", "done", None), ("TINY", "done", None)}, (
        months,
        day["error_class"],
        day["last_error"],
        result.out,
    )


@pytest.mark.parametrize("value", ["NaN", "inf"])
def test_a_universe_bar_whose_price_is_not_a_number_fails_the_day_bad_shape(
    work, market, moto_endpoint, monkeypatch, request, value
):
    """A universe row without a price fails the day `bad_shape` (nothing of that day is
    stored); a close written `NaN` or `inf` is no price either, but it parses as Float64
    and only nulls were checked: the bar was stored, its month `done` (a review,
    2026-12-02)."""
    hit = D(2023, 5, 10)
    bucket = _bucket(monkeypatch, moto_endpoint, request)
    s3 = s3_client(moto_endpoint)
    publish(s3, bucket, market, MAY, SMALL, kinds=("minute",))
    rows = day_rows(market, "minute", hit, SMALL)
    lines = rows.write_csv().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("AAPL,"))
    fields = lines[at].split(",")
    fields[rows.columns.index("close")] = value
    lines[at] = ",".join(fields)
    s3.put_object(
        Bucket=bucket, Key=object_key("minute", hit), Body=gzip.compress(("\n".join(lines) + "\n").encode())
    )
    _plan_may(work, SMALL)
    _flat("l.db", "data", "--max-attempts", "1")
    stored = [
        pl.read_parquet(work / "data" / row["file_path"])
        for row in _units("l.db", "minute")
        if row["file_path"]
    ]
    bad = pl.concat(stored).filter(~pl.col("close").is_finite()) if stored else pl.DataFrame()
    day = next(row for row in _units("l.db", "minute_files") if row["period_start"] == hit.isoformat())
    assert bad.height == 0, bad
    assert (day["state"], day["error_class"]) == ("failed", "bad_shape") and "close" in day["last_error"], (
        dict(day)
    )

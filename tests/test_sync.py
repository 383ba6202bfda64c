"""`polyledger sync`: the ledger remembers what was planned; sync rebuilds the universe as of
the last completed session, plans through it, runs, audits, under a lock in the ledger."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from support import API_KEY, OLD_SQLITE_VARIABLES, at_stock_sqlite_limit, read_dataset, run_cli, truth

from polyledger import sync_refs
from polyledger.errors import AuthError, TransientError
from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit
from polyledger.ledger.connection import LedgerConnection
from polyledger.ledger.records import iso
from polyledger.polygon.breaker import CircuitOpen
from polyledger.sync import (
    EXIT_LOCKED,
    Sync,
    SyncSettings,
    last_completed_session,
    queue_rereads,
    reread_text,
)
from polyledger.sync_lock import LOCK_NAME, SyncLock
from polyledger.testing import Dividend, Listing, Split, StandInServer, SyntheticMarket
from polyledger.testing.market import et_midnight_ms

FIRST_NIGHT = "2024-02-29T22:30:00-05:00"  # Thursday, the last session of February
NEXT_NIGHT = "2024-03-01T22:30:00-05:00"  # Friday: a new month
CORRECTED_ON = dt.date(2024, 2, 14)  # a split or an ex-date the API corrects a record of
LISTINGS = [
    Listing("ALFA", bars_per_day=3),
    Listing("BRAV", bars_per_day=3, primary_exchange="XNYS", delist_date=dt.date(2024, 2, 29)),
    Listing("CHAR", bars_per_day=3),
    Listing("NEWB", bars_per_day=3, list_date=dt.date(2024, 3, 1)),
]


def _market(*, split: bool = False) -> SyntheticMarket:
    listings = list(LISTINGS)
    if split:  # announced after the first night, in force from Monday 2024-03-04's open
        listings[2] = Listing("CHAR", bars_per_day=3, splits=(Split(dt.date(2024, 3, 4), 1, 2),))
    return SyntheticMarket(listings, seed=5)


@pytest.fixture
def stand_in():  # type: ignore[no-untyped-def]
    with StandInServer(_market(), api_keys=(API_KEY,)) as server:
        yield server


def _planned(url: str, *datasets: str, to: str = "2024-02-28") -> None:
    """universe as of the first night, then the plans sync repeats (a fixed --to, too)."""
    built = run_cli("universe", "--out", "universe.csv", "--date", "2024-02-28", "--base-url", url)
    assert built.code == 0, built.out + built.err
    for dataset in datasets:
        args = ["plan", "--dataset", dataset]
        if dataset != "grouped_daily":
            args += ["--universe", "universe.csv"]
        if dataset not in ("splits", "dividends"):
            args += ["--from", "2024-02-26", "--to", to]
        planned = run_cli(*args)
        assert planned.code == 0, planned.out + planned.err


def _units(ledger: str = "ledger.db") -> dict[tuple[str, str, str], tuple[str, str, str]]:
    with Ledger(ledger, create=False) as opened:
        rows = opened.query("SELECT dataset, ticker, period, period_start, period_end, state FROM units")
    return {(r.dataset, r.ticker, r.period): (r.period_start, r.period_end, r.state) for r in rows}


def _attempted_by_last_run(ledger: str = "ledger.db") -> set[tuple[str, str, str]]:
    with Ledger(ledger, create=False) as opened:
        rows = opened.query(
            "SELECT u.dataset, u.ticker, u.period FROM unit_attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE a.run_id = (SELECT id FROM runs ORDER BY started_at DESC LIMIT 1)"
        )
    return {(r.dataset, r.ticker, r.period) for r in rows}


def test_the_last_completed_session_waits_for_the_extended_session_and_skips_closed_days():
    et = dt.timezone(dt.timedelta(hours=-5))
    # before 21:00 ET the day's extended session (to 20:00) is not published yet: the day before
    assert last_completed_session(dt.datetime(2024, 3, 1, 20, 59, tzinfo=et)) == dt.date(2024, 2, 29)
    assert last_completed_session(dt.datetime(2024, 3, 1, 21, 0, tzinfo=et)) == dt.date(2024, 3, 1)
    # 02:00 UTC on Saturday is Friday evening in New York
    assert last_completed_session(dt.datetime(2024, 3, 2, 2, 30, tzinfo=dt.timezone.utc)) == dt.date(
        2024, 3, 1
    )
    # a weekend and Good Friday (2024-03-29, NYSE closed) are no session
    assert last_completed_session(dt.datetime(2024, 4, 1, 9, 0, tzinfo=et)) == dt.date(2024, 3, 28)


def test_sync_without_a_remembered_plan_says_to_plan_first(work, stand_in):
    assert run_cli("universe", "--out", "u.csv", "--date", "2024-02-28", "--base-url", stand_in.url).code == 0
    result = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: this ledger remembers no plan: run `polyledger plan` first (sync repeats every plan)"
    ]


def test_first_sync_downloads_next_night_only_the_new_day_listings_in_delistings_out(work, stand_in):
    _planned(stand_in.url, "minute", "grouped_daily")
    first = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url, "--workers", "2")
    assert first.code == 0, first.out + first.err
    assert "sync through 2024-02-29" in first.out
    units = _units()
    # the plans' --to (2024-02-28) is extended through the night's session; NEWB is not listed yet
    for ticker in ("ALFA", "BRAV", "CHAR"):
        assert units[("minute", ticker, "2024-02")] == ("2024-02-26", "2024-02-29", "done")
    assert ("minute", "NEWB", "2024-02") not in units
    days = sorted(p for (d, _t, p) in units if d == "grouped_daily")
    assert days == ["2024-02-26", "2024-02-27", "2024-02-28", "2024-02-29"]
    assert all(state in ("done", "empty_confirmed") for _s, _e, state in units.values())

    second = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", stand_in.url)
    assert second.code == 0, second.out + second.err
    after = _units()
    new = set(after) - set(units)
    # BRAV's last session was 2024-02-29: no March; NEWB, listed 2024-03-01, is planned
    assert {key for key in new if key[0] == "minute"} == {
        ("minute", "ALFA", "2024-03"),
        ("minute", "CHAR", "2024-03"),
        ("minute", "NEWB", "2024-03"),
    }
    assert {key for key in new if key[0] == "grouped_daily"} == {("grouped_daily", "us-stocks", "2024-03-01")}
    assert after[("minute", "NEWB", "2024-03")] == ("2024-03-01", "2024-03-01", "done")
    # the run fetched the new day's bar units only: BRAV's listing now ends (delisted_utc
    # 2024-02-29), which changes no day of its February, so February keeps its bars
    fetched = {key for key in _attempted_by_last_run() if key[0] in ("minute", "grouped_daily")}
    assert fetched == {key for key in new if key[0] in ("minute", "grouped_daily")}
    assert "(listings changed)" not in second.out
    # and the other February units were left as they were
    assert all(after[key] == units[key] for key in units if key[0] == "minute")


def test_the_days_a_sync_planned_are_recorded_as_planned_so_a_change_of_listings_reaches_them(work, stand_in):
    """`plan --to 2024-02-28`, then a sync through 2024-03-01: ALFA got March 1, BRAV
    (delisted 2024-02-29 by the file) none. The file corrected (BRAV traded on to
    2024-03-15) and planned again for its own range: the ledger recorded the plan's
    2024-02-28 as the last day planned (`planned.widest_day`), never the sync's session,
    so the change was owed over February only; BRAV's March 1, inside the range the ledger
    planned and inside the listing now, was in no unit, and `audit`, judging the same
    record, said nothing (with the dataset out of sync, for good)."""
    header = "ticker,security_id,list_date,delisted_utc\n"
    Path("universe.csv").write_text(f"{header}ALFA,CO1,,\nBRAV,CO2,,2024-02-29T00:00:00Z\n", encoding="utf-8")
    assert (
        run_cli("plan", "--universe", "universe.csv", "--from", "2024-02-26", "--to", "2024-02-28").code == 0
    )
    synced = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", stand_in.url)
    assert synced.code == 0, synced.out + synced.err
    assert ("minute", "ALFA", "2024-03") in _units() and ("minute", "BRAV", "2024-03") not in _units()
    with Ledger("ledger.db", create=False) as ledger:
        assert [plan.widest_day for plan in ledger.remembered_plans()] == [dt.date(2024, 3, 1)]
    assert run_cli("sync", "--forget", "minute").code == 0
    Path("universe.csv").write_text(f"{header}ALFA,CO1,,\nBRAV,CO2,,2024-03-15T00:00:00Z\n", encoding="utf-8")
    again = run_cli("plan", "--universe", "universe.csv", "--from", "2024-02-26", "--to", "2024-02-28")
    assert again.code == 0, again.out + again.err
    assert _units()[("minute", "BRAV", "2024-03")] == ("2024-03-01", "2024-03-01", "pending"), again.out


def test_sync_says_which_periods_another_run_held_while_it_planned(work, stand_in):
    """A month another run is fetching cannot be widened through the night's session: the
    sync says so (the next sync widens it), rather than leaving it short without a word."""
    _planned(stand_in.url, "minute")
    with sqlite3.connect("ledger.db") as con:
        con.execute("UPDATE units SET state = 'running' WHERE dataset = 'minute' AND ticker = 'ALFA'")
    ran = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url, "--workers", "2")
    assert "2 widened" in ran.out, ran.out
    assert "1 being fetched by another run (widened next time)" in ran.out, ran.out


def test_a_sync_started_while_a_run_works_reads_that_runs_options(work, stand_in, monkeypatch):
    """`run --data elsewhere` remembers its options for `sync` as it starts (once it can no
    longer be refused), not when it ends: a sync from cron during a long first run uses its
    data folder, not ./data."""
    from polyledger.fetch.runner import Run
    from polyledger.sync import RUN_KEY

    _planned(stand_in.url, "day")
    seen: list = []
    real_execute = Run.execute

    def execute_and_look(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with Ledger("ledger.db", create=False) as other:  # what a sync starting now reads
            seen.append(other.setting(RUN_KEY))
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(Run, "execute", execute_and_look)
    (work / "data").rename(work / "elsewhere")  # the universe's details with it: one ledger, one folder
    ran = run_cli("run", "--data", "elsewhere", "--base-url", stand_in.url)
    assert ran.code == 0, ran.out + ran.err
    assert seen[0] is not None and json.loads(seen[0])["data"].endswith("elsewhere")


def test_splits_announced_since_the_last_sync_refetch_only_that_ticker_and_make_its_bars_stale(
    work, stand_in, monkeypatch
):
    _ledger_clock_at(monkeypatch, "2024-02-28T22:30:00-05:00")  # planned the night before
    _planned(stand_in.url, "minute", "splits")
    first = _sync_at(stand_in.url, FIRST_NIGHT, monkeypatch)
    assert first.code == 0, first.out + first.err
    stand_in.market = _market(split=True)  # CHAR announces a split for Monday
    second = _sync_at(stand_in.url, NEXT_NIGHT, monkeypatch)
    assert "1 queued again for records announced since fetched (CHAR)" in second.out, second.out
    splits = {key for key in _attempted_by_last_run() if key[0] == "splits"}
    assert splits == {("splits", "CHAR", "all"), ("splits", "NEWB", "all")}  # NEWB: new in the universe
    with Ledger("ledger.db", create=False) as ledger:
        assert [tuple(r) for r in ledger.query("SELECT ticker, execution_date FROM splits")] == [
            ("CHAR", "2024-03-04")
        ]
    assert second.code == 0, second.out  # not in force yet: nothing stale
    # the next night CHAR's file holds the split: nothing is asked again
    third = _sync_at(stand_in.url, "2024-03-04T22:30:00-05:00", monkeypatch)
    assert "planned splits: 0 new tickers; 0 queued again" in third.out, third.out
    assert not {key for key in _attempted_by_last_run() if key[0] == "splits"}
    # in force since Monday's open: February's adjusted bars, last read on Friday night, are
    # stale as `audit` says today: exit 1
    assert (
        third.code == 1 and "stale adjusted" in third.out and "CHAR 2024-02: split on 2024-03-04" in third.out
    )


def test_dividends_announced_since_the_last_sync_refetch_only_that_tickers_unit(work, stand_in):
    _planned(stand_in.url, "dividends")
    assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url).code == 0
    listings = list(LISTINGS)
    listings[0] = Listing("ALFA", bars_per_day=3, dividends=(Dividend(dt.date(2027, 1, 4), 0.25),))
    stand_in.market = SyntheticMarket(listings, seed=5)
    second = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", stand_in.url)
    assert second.code == 0, second.out + second.err
    assert "1 queued again for records announced since fetched (ALFA)" in second.out
    fetched = {key for key in _attempted_by_last_run() if key[0] == "dividends"}
    assert fetched == {("dividends", "ALFA", "all"), ("dividends", "NEWB", "all")}


def test_a_second_sync_while_one_runs_says_who_holds_the_lock_and_exits_4(work, stand_in, monkeypatch):
    _planned(stand_in.url, "grouped_daily")
    inside, release = threading.Event(), threading.Event()
    import polyledger.sync as sync_module

    real_phases = sync_module.Sync._phases

    def held_open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        inside.set()
        assert release.wait(60)
        return real_phases(self, *args, **kwargs)

    monkeypatch.setattr(sync_module.Sync, "_phases", held_open)
    settings = SyncSettings(
        api_key=API_KEY, now=dt.datetime.fromisoformat(FIRST_NIGHT), base_url=stand_in.url
    )
    codes: list[int] = []
    first = threading.Thread(
        target=lambda: codes.append(Sync("ledger.db", settings, Console(quiet=True), stand_in.url).execute())
    )
    first.start()
    try:
        assert inside.wait(60)
        second = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
    finally:
        release.set()
        first.join(60)
    assert second.code == EXIT_LOCKED and second.out == ""
    line = second.err.strip()
    assert line.startswith(
        f"error: another sync is running: host {socket.gethostname()} pid {os.getpid()} since "
    )
    assert line.endswith("; nothing done") and len(second.err.strip().splitlines()) == 1
    assert codes == [0]
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME) is None  # released when the first one ended


def _lock_row(host: str, pid: int, beat: str) -> None:
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.try_sync_lock(LOCK_NAME, "someone", host, pid)
        with ledger.engine.begin() as connection:
            connection.exec_driver_sql(f"UPDATE sync_lock SET since = '{beat}', beat_at = '{beat}'")


@pytest.mark.parametrize(
    ("host", "pid", "beat", "reason"),
    [
        ("other-host", 4242, "2026-01-01T00:00:00.000Z", "no heartbeat for "),
        # this host, a pid that no longer runs: taken once silent for a few beats (20 s),
        # long before the minute a holder elsewhere gets
        (None, None, None, "no longer runs on this host, no heartbeat for 2"),
    ],
)
def test_a_dead_holders_lock_is_taken_over_in_one_line(work, stand_in, host, pid, beat, reason):
    _planned(stand_in.url, "grouped_daily")
    if host is None:  # a child that has exited: its pid is free
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        quiet = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20)  # the database's clock
        with Ledger("ledger.db", create=False) as ledger:
            assert ledger.try_sync_lock(LOCK_NAME, "someone", socket.gethostname(), child.pid)
            with ledger.engine.begin() as connection:
                connection.exec_driver_sql(f"UPDATE sync_lock SET beat_at = '{iso(quiet)}'")
    else:
        _lock_row(host, pid, beat)
    result = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
    if host is None and os.name != "posix":  # no way to tell a pid is gone: the heartbeat decides
        assert result.code == EXIT_LOCKED
        return
    assert result.code == 0, result.out + result.err
    took = [line for line in result.out.splitlines() if line.startswith("took over the sync lock of host ")]
    assert len(took) == 1 and reason in took[0]
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME) is None


def test_a_live_holder_on_another_host_keeps_its_lock(work, stand_in):
    _planned(stand_in.url, "grouped_daily")
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.try_sync_lock(LOCK_NAME, "someone", "other-host", 4242)  # beats now
    result = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
    assert result.code == EXIT_LOCKED
    assert "another sync is running: host other-host pid 4242 since " in result.err
    assert not any(key[0] == "grouped_daily" and key[2] == "2024-02-29" for key in _units())  # nothing done


def test_a_live_sync_on_a_host_of_the_same_name_keeps_its_lock(work, stand_in):
    """Two containers on one machine commonly share its hostname (`--network host`) and
    each has its own pid namespace: a pid of the other container does not exist in this
    one. A live holder, beating, must not be taken for dead for that."""
    _planned(stand_in.url, "grouped_daily")
    # the other container's pid: one that does not exist here (a reaped child's)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with Ledger("ledger.db", create=False) as ledger, SyncLock(ledger) as live:
        with ledger.engine.begin() as connection:  # the holder, as the other container wrote it
            connection.exec_driver_sql(f"UPDATE sync_lock SET pid = {child.pid}")
        holder = ledger.sync_lock_holder(LOCK_NAME)
        assert holder.token == live.token and holder.host == socket.gethostname() and holder.age < 5
        second = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
        still_ours = ledger.beat_sync_lock(LOCK_NAME, live.token)
    assert (second.code, still_ours) == (EXIT_LOCKED, True), second.out[:300]


@pytest.mark.parametrize("how", ["interrupt", "sigterm"])
def test_the_lock_is_released_when_sync_is_interrupted(work, stand_in, monkeypatch, how):
    _planned(stand_in.url, "grouped_daily")
    import polyledger.sync as sync_module

    def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # handled on the main thread: KeyboardInterrupt
        raise KeyboardInterrupt

    monkeypatch.setattr(sync_module.Sync, "_plan", interrupted)
    result = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url)
    assert result.code == 130
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME) is None


def test_sync_exit_code_is_the_audits(work, stand_in):
    # a plan reaching into a month the stand-in refuses (history) leaves failed units: 1
    with StandInServer(_market(), api_keys=(API_KEY,), history_start=dt.date(2024, 2, 27)) as limited:
        _planned(limited.url, "grouped_daily")
        result = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", limited.url)
    assert result.code == 1, result.out + result.err
    assert "INCOMPLETE" in result.out


def test_plan_and_universe_are_remembered_with_absolute_paths(work, stand_in):
    _planned(stand_in.url, "minute", "grouped_daily", "splits")
    run_cli("plan", "--universe", "universe.csv", "--dataset", "minute", "--from", "2024-01-02")
    with Ledger("ledger.db", create=False) as ledger:
        plans = ledger.remembered_plans()
        builds = ledger.remembered_universes()
    source = str(Path("universe.csv").resolve())
    assert [(p.dataset, p.universe, p.first_day, p.last_day) for p in plans] == [
        ("minute", source, dt.date(2024, 1, 2), None),  # the earliest --from; no --to: through
        ("grouped_daily", "", dt.date(2024, 2, 26), dt.date(2024, 2, 28)),
        ("splits", source, None, None),
    ]
    assert [(b.out, b.types, b.exchanges, b.cap_max, b.as_of) for b in builds] == [
        (source, ("CS",), ("XNAS", "XNYS"), None, dt.date(2024, 2, 28))
    ]


def test_sync_runs_with_the_last_runs_options_unless_given(work, stand_in):
    _planned(stand_in.url, "grouped_daily")
    (work / "data").rename(work / "elsewhere")  # the universe's details with it: one ledger, one folder
    ran = run_cli("run", "--workers", "3", "--rate", "7", "--data", "elsewhere", "--base-url", stand_in.url)
    assert ran.code == 0, ran.out + ran.err
    assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url).code == 0
    assert run_cli("sync", "--now", NEXT_NIGHT, "--base-url", stand_in.url, "--workers", "2").code == 0
    with Ledger("ledger.db", create=False) as ledger:
        runs = ledger.query("SELECT workers, rate FROM runs ORDER BY started_at")
    # the universe's build first (its own defaults), then `run`, the two syncs
    assert [(r.workers, r.rate) for r in runs[1:]] == [(3, 7.0), (3, 7.0), (2, 7.0)]
    # the data folder too: the new days' files went where the run put the first ones
    days = sorted(p.parent.name for p in (work / "elsewhere" / "grouped_daily").rglob("*.parquet"))
    assert [day[-10:] for day in days][-2:] == ["2024-02-29", "2024-03-01"]
    assert not (work / "data" / "grouped_daily").exists()


def test_the_universes_rebuild_runs_with_the_nights_options_too(work, stand_in, monkeypatch):
    import polyledger.sync

    _planned(stand_in.url, "day")  # a plan reading the universe: sync builds it again
    settings = ["--lease-seconds", "123", "--max-attempts", "5", "--give-up-after", "77", "--timeout", "9"]
    ran = run_cli("run", "--workers", "3", "--rate", "7", *settings, "--base-url", stand_in.url)
    assert ran.code == 0, ran.out + ran.err
    built = []

    class Recorded(polyledger.sync.Run):
        def __init__(self, *args, options, **kwargs):
            built.append(options)
            super().__init__(*args, options=options, **kwargs)

    monkeypatch.setattr(polyledger.sync, "Run", Recorded)
    assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url).code == 0
    universe, night = built  # the universe's build, then the night's run
    assert universe.datasets == polyledger.sync.UNIVERSE_DATASETS and night.datasets == ("day",)
    for options in built:
        assert (options.workers, options.rate, options.lease_seconds) == (3, 7.0, 123.0)
        assert (options.max_attempts, options.give_up_after, options.timeout[1]) == (5, 77.0, 9.0)


def test_forget_stops_syncing_a_dataset_and_only_that_one(work, stand_in):
    _planned(stand_in.url, "minute", "grouped_daily")
    unknown = run_cli("sync", "--forget", "day")
    assert unknown.code == 2 and "sync does not plan day: it plans grouped_daily, minute" in unknown.err
    forgot = run_cli("sync", "--forget", "minute")
    assert forgot.code == 0 and "sync no longer plans minute" in forgot.out
    assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url).code == 0
    units = _units()
    assert units[("grouped_daily", "us-stocks", "2024-02-29")][2] == "done"
    assert {units[key][:2] for key in units if key[0] == "minute"} == {("2024-02-26", "2024-02-28")}
    # nor fetched: sync's run takes in the datasets it plans only (a forgotten dataset's
    # pending units were downloaded every night, its failures setting sync's exit code)
    assert {units[key][2] for key in units if key[0] == "minute"} == {"pending"}


def test_forget_stops_the_sync_of_a_dataset_not_audits_judgement_of_its_holes(work, stand_in):
    """`sync --forget D` takes D out of sync only: `audit` still reports the days between
    D's units that no unit covers (found by a new user's review: the hole vanished, exit
    0), and a `plan` of D makes sync plan it again."""
    built = run_cli("universe", "--out", "universe.csv", "--date", "2024-02-28", "--base-url", stand_in.url)
    assert built.code == 0, built.out + built.err
    for first, last in (("2024-01-02", "2024-01-31"), ("2024-03-01", "2024-03-28")):
        planned = run_cli("plan", "--universe", "universe.csv", "--from", first, "--to", last)
        assert planned.code == 0, planned.err
    assert run_cli("run", "--base-url", stand_in.url).code == 0  # its units all settled
    before = run_cli("audit")
    assert before.code == 1 and "unplanned" in before.out
    assert run_cli("sync", "--forget", "minute").code == 0
    after = run_cli("audit")
    assert after.code == 1 and "unplanned" in after.out, after.out
    assert run_cli("sync", "--forget", "minute").code == 2  # forgotten already: sync plans nothing
    assert (
        run_cli("plan", "--universe", "universe.csv", "--from", "2024-02-01", "--to", "2024-02-29").code == 0
    )
    with Ledger("ledger.db", create=False) as ledger:
        assert [plan.dataset for plan in ledger.remembered_plans()] == ["minute"]  # synced again


def test_a_holder_beats_while_it_runs_and_stops_beating_once_its_lock_is_taken(tmp_path):
    from support import wait_for

    with Ledger(tmp_path / "ledger.db") as ledger, SyncLock(ledger, beat=0.01) as lock:
        first = ledger.sync_lock_holder(LOCK_NAME)
        assert first is not None and first.token == lock.token
        # a live sync's heartbeat moves on: nobody may take it for dead
        assert wait_for(lambda: ledger.sync_lock_holder(LOCK_NAME).beat_at != first.beat_at, 30)
        holder = ledger.sync_lock_holder(LOCK_NAME)
        assert ledger.take_over_sync_lock(LOCK_NAME, holder, "theirs", "other-host", 1)
        assert wait_for(lambda: not lock._thread.is_alive(), 30)  # it noticed, and stopped beating
        assert ledger.sync_lock_holder(LOCK_NAME).token == "theirs"
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME).token == "theirs"  # its release left their lock alone


def test_a_lock_whose_insert_landed_but_whose_answer_was_lost_is_not_held_against_itself(
    tmp_path, monkeypatch
):
    """On PostgreSQL every lock call is `_reconnecting`: when the connection drops between
    COMMIT and its answer, the call is made again (connection.py says so, and claims take
    back their own units by token). The repeated INSERT ... ON CONFLICT DO NOTHING then
    answers 0 rows, and `SyncLock.acquire` judged the row it had just written: same host, a
    heartbeat 0 s old, its own pid (not "gone") -> LockHeld naming itself: the sync exited
    4, "another sync is running: host <this> pid <this>". The repeat is simulated here: the
    first INSERT lands, its answer says it did not (found by a review)."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        real = ledger.try_sync_lock
        calls: list[int] = []

        def landed_but_answer_lost(name, token, host, pid):  # type: ignore[no-untyped-def]
            calls.append(1)
            real(name, token, host, pid)  # committed ...
            return False if len(calls) == 1 else real(name, token, host, pid)  # ... answer lost

        monkeypatch.setattr(ledger, "try_sync_lock", landed_but_answer_lost)
        lock = SyncLock(ledger, beat=3600)
        try:
            lock.acquire()
        except Exception as exc:  # noqa: BLE001
            holder = ledger.sync_lock_holder(LOCK_NAME)
            pytest.fail(
                f"{type(exc).__name__}: {exc} -- the row is this very lock's "
                f"(token {holder.token == lock.token if holder else None})"
            )
        finally:
            ledger.release_sync_lock(LOCK_NAME, lock.token)


def test_a_takeover_whose_answer_was_lost_holds_the_lock_and_says_whose_it_took(work, monkeypatch):
    """The same lost answer on a takeover: the UPDATE of a dead holder's row lands, its
    answer says it did not, and the next look finds this lock's own token, 0 s old, its own
    pid: it is this sync's lock (and the line says whose it took), not another sync's."""
    with Ledger("ledger.db"):
        pass
    _lock_row("other-host", 4242, "2024-01-01T00:00:00.000Z")  # dead: no beat for long
    with Ledger("ledger.db", create=False) as ledger:
        real = ledger.take_over_sync_lock

        def landed_but_answer_lost(name, holder, token, host, pid):  # type: ignore[no-untyped-def]
            assert real(name, holder, token, host, pid)  # committed ...
            return False  # ... answer lost

        monkeypatch.setattr(ledger, "take_over_sync_lock", landed_but_answer_lost)
        lock = SyncLock(ledger, beat=3600)
        try:
            lock.acquire()
            assert ledger.sync_lock_holder(LOCK_NAME).token == lock.token
            assert (lock.took_over or "").startswith("took over the sync lock of host other-host pid 4242 ")
        finally:
            ledger.release_sync_lock(LOCK_NAME, lock.token)


def _ledger_clock_at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Every Ledger opened from now on runs on a clock that reads `moment` now and moves on
    in real time (what a host's clock reads at that moment of the night)."""
    target = dt.datetime.fromisoformat(moment).astimezone(dt.timezone.utc)
    started = dt.datetime.now(dt.timezone.utc)
    clock = lambda: target + (dt.datetime.now(dt.timezone.utc) - started)  # noqa: E731
    monkeypatch.setitem(LedgerConnection.__init__.__kwdefaults__, "clock", clock)


def _sync_at(url: str, now: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`sync --now now`, the ledger's clock reading `now` too (its fetched_at stamps)."""
    _ledger_clock_at(monkeypatch, now)
    return run_cli("sync", "--now", now, "--base-url", url)


def _bars_of(day: dt.date, ticker: str = "ALFA") -> pl.DataFrame:
    stored = read_dataset(Path("data"), "minute").filter(pl.col("ticker") == ticker)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    return stored.filter(
        (pl.col("timestamp") >= start) & (pl.col("timestamp") < start + dt.timedelta(days=1))
    )


class _Corrected(SyntheticMarket):
    """The market with the volumes of some sessions corrected after the fact (every bar of
    those days one share more), its listings and identities unchanged."""

    def __init__(self, corrected: set[dt.date]) -> None:
        super().__init__(LISTINGS, seed=5)
        self.corrected = {et_midnight_ms(day) for day in corrected}

    def minute_bars(self, ticker: str, start_ms: int, end_ms: int, *, adjusted: bool = False) -> pl.DataFrame:
        bars = super().minute_bars(ticker, start_ms, end_ms, adjusted=adjusted)
        day_ms = 24 * 3600 * 1000
        hit = pl.lit(False)
        for ms in self.corrected:
            hit = hit | ((pl.col("t") >= ms) & (pl.col("t") < ms + day_ms))
        return bars.with_columns(pl.when(hit).then(pl.col("v") + 1).otherwise(pl.col("v")).alias("v"))


def test_a_months_last_trading_day_is_re_read_like_every_other_recent_day(work, monkeypatch):
    """sync re-reads the current month every night (its clipped unit is widened and fetched
    whole), so a late correction to a recent day is picked up the next night. A month's
    last trading day must be too: the night it is the session, the month's unit reaches
    its calendar end and is no longer clipped, so the next night reads it once more."""
    wednesday, thursday = dt.date(2024, 2, 28), dt.date(2024, 2, 29)
    with StandInServer(_Corrected(set()), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "grouped_daily")
        assert _sync_at(server.url, "2024-02-28T22:30:00-05:00", monkeypatch).code == 0
        # the API corrects Wednesday's bars after the sync read them ...
        server.market = _Corrected({wednesday})
        assert _sync_at(server.url, "2024-02-29T22:30:00-05:00", monkeypatch).code == 0
        # ... and the next night's sync picked the correction up
        expected = truth(server.market, "minute", "ALFA", wednesday, wednesday)
        assert _bars_of(wednesday).select(expected.columns).equals(expected)
        # the API corrects Thursday's bars, 2024-02-29, the last session of February
        server.market = _Corrected({wednesday, thursday})
        friday = _sync_at(server.url, "2024-03-01T22:30:00-05:00", monkeypatch)
        assert friday.code == 0, friday.out + friday.err
        # February's units (and grouped_daily's 2024-02-29) were read at 22:30 that night:
        # read once more; not the next night (read after Friday's session ended)
        assert "0 widened, 3 queued again to re-read 2024-02-29" in friday.out, friday.out
        assert "0 widened, 1 queued again to re-read 2024-02-29" in friday.out, friday.out
        monday = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)
        assert "re-read 2024-03-01" in monday.out and "re-read 2024-02-29" not in monday.out
        expected = truth(server.market, "minute", "ALFA", thursday, thursday)
        stored = _bars_of(thursday)
    assert stored.height == expected.height > 0
    assert stored.select(expected.columns).equals(expected), "the last day of February was never re-read"


def test_a_months_last_session_is_re_read_when_the_next_nights_sync_was_skipped(work, monkeypatch):
    """sync re-read only the session before tonight's: with Friday night's sync skipped
    (machine off, sync failed), Monday's re-read Friday and February's units, read on
    Thursday night, the last session of February, were never read a full session after
    it. Every unit read before the session after one of its sessions ended is re-read."""
    thursday = dt.date(2024, 2, 29)
    with StandInServer(_Corrected(set()), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "grouped_daily")
        assert _sync_at(server.url, "2024-02-29T22:30:00-05:00", monkeypatch).code == 0
        server.market = _Corrected({thursday})  # corrected after Thursday night's read
        monday = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)  # Friday: no sync
        assert monday.code == 0, monday.out + monday.err
        # the three Februaries (BRAV's delisting on the 29th changes none of its February's
        # days) and grouped_daily's 2024-02-29; the 26th to 28th were read a full session later
        assert "3 new units, 0 widened, 3 queued again to re-read 2024-02-29" in monday.out, monday.out
        assert "0 widened, 1 queued again to re-read 2024-02-29" in monday.out, monday.out
        expected = truth(server.market, "minute", "ALFA", thursday, thursday)
        stored = _bars_of(thursday)
    assert stored.height == expected.height > 0
    assert stored.select(expected.columns).equals(expected), "the last day of February was never re-read"


def test_the_session_before_a_skipped_night_is_re_read(work, monkeypatch):
    """Monday's sync reads Monday's session, Tuesday's is skipped: Wednesday's re-read only
    Tuesday's units, so grouped_daily's Monday (a day unit, never widened) stayed read once,
    before Tuesday's session ended. The months' units are widened and read whole anyway."""
    with StandInServer(_Corrected(set()), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "grouped_daily", to="2024-02-26")
        assert _sync_at(server.url, "2024-02-26T22:30:00-05:00", monkeypatch).code == 0
        wednesday = _sync_at(server.url, "2024-02-28T22:30:00-05:00", monkeypatch)
    assert wednesday.code == 0, wednesday.out + wednesday.err
    assert "planned minute 2024-02-26 to 2024-02-28: 0 new units, 3 widened\n" in wednesday.out, wednesday.out
    assert "2 new units, 0 widened, 1 queued again to re-read 2024-02-26" in wednesday.out, wednesday.out
    with Ledger("ledger.db", create=False) as ledger:
        reads = ledger.query(
            "SELECT count(*) FROM unit_attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE u.dataset = 'grouped_daily' AND u.period = '2024-02-26'"
        )
    assert reads[0][0] == 2, "Monday's grouped_daily was read once, before Tuesday's session ended"


def _settled(ledger: Ledger, dataset: str, ticker: str, first: dt.date, last: dt.date, fetched: str) -> None:
    """A unit of `dataset` over [first, last], done with bars fetched at `fetched` (ISO, a zone);
    grouped_daily's units are days."""
    from polyledger.ledger import PlannedUnit

    name = first.isoformat() if dataset == "grouped_daily" else None
    ledger.add_units([PlannedUnit(dataset, ticker, first, last, name)])
    stamp = iso(dt.datetime.fromisoformat(fetched))
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE units SET state = 'done', fetched_at = '{stamp}' WHERE dataset = '{dataset}' "
            f"AND ticker = '{ticker}' AND period_start = '{first}'"
        )


def _pending(ledger: Ledger) -> set[tuple[str, str]]:
    return {
        (r.ticker, r.period_start)
        for r in ledger.query("SELECT ticker, period_start FROM units WHERE state = 'pending'")
    }


def check_re_reads(location: str) -> None:
    """The re-read rule on one ledger (SQLite here, PostgreSQL in test_postgres): units
    read before the session after one of theirs ended are queued once, whatever nights
    were skipped; units read a full session later, or already re-read, are not."""
    feb = dt.date(2024, 2, 1), dt.date(2024, 2, 29)
    with Ledger(location) as ledger:
        _settled(ledger, "minute", "THUR", *feb, "2024-02-29T22:30:00-05:00")  # Thursday night
        _settled(ledger, "minute", "FRI1", *feb, "2024-03-01T19:59:59-05:00")  # before Friday's end
        _settled(ledger, "minute", "FRI2", *feb, "2024-03-01T20:00:00-05:00")  # at Friday's end
        _settled(ledger, "minute", "SATU", *feb, "2024-03-02T10:00:00-05:00")  # well after
        # January, re-read the night after its last session: read a full session after it
        _settled(
            ledger, "minute", "JANU", dt.date(2024, 1, 2), dt.date(2024, 1, 31), "2024-02-01T22:30:00-05:00"
        )
        # Monday night; Friday night's sync was skipped
        queued = queue_rereads(ledger, "minute", dt.date(2024, 3, 4))
        assert (queued.units, queued.sessions) == (2, (dt.date(2024, 2, 29),))
        assert _pending(ledger) == {("THUR", "2024-02-01"), ("FRI1", "2024-02-01")}
        # read again that night: past every session's deadline, never picked again
        with ledger.engine.begin() as connection:
            stamp = iso(dt.datetime.fromisoformat("2024-03-04T22:40:00-05:00"))
            connection.exec_driver_sql(
                f"UPDATE units SET state = 'done', fetched_at = '{stamp}' WHERE state = 'pending'"
            )
        assert queue_rereads(ledger, "minute", dt.date(2024, 3, 4)).units == 0  # a second sync that night
        assert queue_rereads(ledger, "minute", dt.date(2024, 3, 5)).units == 0  # the next night
        assert _pending(ledger) == set()


def test_a_unit_is_re_read_once_for_each_session_it_was_read_too_soon_after(tmp_path):
    check_re_reads(str(tmp_path / "ledger.db"))


def test_units_of_several_sessions_say_each_session_re_read(tmp_path):
    """grouped_daily's days each read the night of their session by a plain `run` (its own
    cron), then the first sync: each is re-read, and the summary says which sessions."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        for day in (26, 27, 28):
            session = dt.date(2024, 2, day)
            _settled(ledger, "grouped_daily", "us-stocks", session, session, f"{session}T22:30:00-05:00")
        queued = queue_rereads(ledger, "grouped_daily", dt.date(2024, 2, 29))  # Thursday night
        assert queued.units == 3
        assert queued.sessions == (dt.date(2024, 2, 26), dt.date(2024, 2, 27), dt.date(2024, 2, 28))
    assert reread_text(queued.sessions) == "3 sessions from 2024-02-26 to 2024-02-28"
    assert reread_text(queued.sessions[1:]) == "2024-02-27 and 2024-02-28"


def test_the_re_read_looks_back_forty_days(tmp_path):
    """A unit read the night of a session over 40 days before tonight's is past the window
    (a bounded query; older sessions' corrections are not looked for)."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        for day in ("2024-01-23", "2024-01-24"):  # 41 and 40 days before 2024-03-04
            session = dt.date.fromisoformat(day)
            _settled(ledger, "grouped_daily", "us-stocks", session, session, f"{day}T22:30:00-05:00")
        queued = queue_rereads(ledger, "grouped_daily", dt.date(2024, 3, 4))
    assert (queued.units, queued.sessions) == (1, (dt.date(2024, 1, 24),))


def _char_splits(*splits: Split) -> SyntheticMarket:
    """The market with CHAR's splits as given (the API's records of them)."""
    return _char_with(splits=splits)


def _char_with(**events: tuple) -> SyntheticMarket:
    """The market with CHAR's splits or dividends as given (the API's records of them)."""
    listings = [Listing("CHAR", bars_per_day=3, **events) if x.ticker == "CHAR" else x for x in LISTINGS]
    return SyntheticMarket(listings, seed=5)


def test_a_split_the_api_withdrew_leaves_the_ledger(work, monkeypatch):
    """sync re-fetched a splits unit only when a record id appeared that its file lacked: a
    split the API withdraws (entered in error) stayed in the ledger's `splits` table, and
    so in every adjusted read and every stale judgement, for good. A record the file holds,
    dated inside the window sync lists, that the listing no longer shows queues it again."""
    with StandInServer(_char_splits(Split(dt.date(2024, 3, 11), 1, 2)), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "splits")
        first = _sync_at(server.url, FIRST_NIGHT, monkeypatch)
        assert first.code == 0 and "stale adjusted" not in first.out  # a split to come stales nothing yet
        with Ledger("ledger.db", create=False) as ledger:
            assert [tuple(r) for r in ledger.query("SELECT ticker, execution_date FROM splits")] == [
                ("CHAR", "2024-03-11")
            ]
        server.market = _char_splits()  # withdrawn
        assert server.market.split_records() == []
        second = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
    assert "1 queued again for records announced since fetched (CHAR)" in second.out, second.out
    assert second.code == 0, second.out
    with Ledger("ledger.db", create=False) as ledger:
        held = [tuple(r) for r in ledger.query("SELECT ticker, execution_date FROM splits")]
    assert held == [], f"the ledger still holds a split the API no longer has: {held}"


def _char_universe_planned(url: str) -> None:
    """CHAR's universe built as of 2024-02-28, its minute bars planned from 2024-01-29 and its splits."""
    built = run_cli("universe", "--out", "universe.csv", "--date", "2024-02-28", "--base-url", url)
    assert built.code == 0, built.out + built.err
    for args in (
        ["--from", "2024-01-29", "--to", "2024-02-28", "--dataset", "minute"],
        ["--dataset", "splits"],
    ):
        assert run_cli("plan", "--universe", "universe.csv", *args).code == 0


def test_a_month_fetched_the_evening_before_a_split_is_stale(work, monkeypatch):
    """The documented nightly sync (22:30 New York) fetches CHAR's January on Thursday
    evening, 2024-02-29; the API rebases its adjusted prices for a 1:2 split taking effect
    at Friday's open, 2024-03-01. Those January bars are on the old share basis: they no
    longer join March's, so they must be reported stale and `retry --stale` must redo them.
    The ledger stamps the fetch in UTC, 2024-03-01T03:30Z, the split's date. (February is
    read again on Friday night anyway: it holds Thursday's session.)"""
    with StandInServer(_char_splits(), api_keys=(API_KEY,)) as server:
        _char_universe_planned(server.url)
        first = _sync_at(server.url, FIRST_NIGHT, monkeypatch)
        assert first.code == 0, first.out + first.err
        # the split is announced (and applied by the API) for Friday's open
        server.market = _char_splits(Split(dt.date(2024, 3, 1), 1, 2))
        second = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
    assert "queued again for records announced since fetched (CHAR)" in second.out, second.out
    with Ledger("ledger.db", create=False) as ledger:
        assert [tuple(r) for r in ledger.query("SELECT ticker, execution_date FROM splits")] == [
            ("CHAR", "2024-03-01")
        ]
        (jan,) = ledger.query(
            "SELECT fetched_at, adjusted FROM units WHERE dataset = 'minute' AND ticker = 'CHAR' "
            "AND period = '2024-01'"
        )
        assert jan.fetched_at.startswith("2024-03-01T03:3") and jan.adjusted  # fetched before the open
    # what is stored for January is not what the API now serves adjusted: half the prices
    stored = read_dataset(Path("data"), "minute").filter(pl.col("ticker") == "CHAR")
    jan_stored = stored.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1, 5, tzinfo=dt.timezone.utc))
    now_served = truth(
        server.market, "minute", "CHAR", dt.date(2024, 1, 29), dt.date(2024, 1, 31), adjusted=True
    )
    assert jan_stored.height == now_served.height > 0
    assert jan_stored["close"].to_list() != now_served["close"].to_list()
    # CHAR's January is on the pre-split basis: audit must say so (exit 1), retry must redo it
    assert second.code == 1 and "stale adjusted" in second.out, second.out
    assert run_cli("retry", "--stale").out.startswith("1 stale units are pending again")


def test_a_split_announced_for_a_later_day_is_no_staleness_until_it_executes(work, monkeypatch):
    """An adjusted ledger synced nightly; on 2024-03-01 the API announces CHAR's 1:2 split
    for 2024-03-06. Until that day's open every price the API serves is on the old basis,
    the bars fetched before the announcement included: nothing is stale. The stale audit
    compared each fetch with the split's date alone, so every night from the announcement
    on exited 1 ("stale adjusted"), and the cure it names could not cure it: `retry
    --stale` fetched the units again, still before the split, stale again the next night.
    A known future split is not staleness: the nights before it exit 0, the night it
    executes flags the units fetched before its open, and `retry --stale` cures them."""
    with StandInServer(_char_splits(), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "splits")
        assert _sync_at(server.url, FIRST_NIGHT, monkeypatch).code == 0
        server.market = _char_splits(Split(dt.date(2024, 3, 6), 1, 2))  # announced, for Wednesday
        announced = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
        waiting = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)
        executed = _sync_at(server.url, "2024-03-06T22:30:00-05:00", monkeypatch)
        retried = run_cli("retry", "--stale")
        cured = _sync_at(server.url, "2024-03-07T22:30:00-05:00", monkeypatch)
    assert "1 queued again for records announced since fetched (CHAR)" in announced.out, announced.out
    with Ledger("ledger.db", create=False) as ledger:
        assert [tuple(r) for r in ledger.query("SELECT ticker, execution_date FROM splits")] == [
            ("CHAR", "2024-03-06")
        ]
    for night in (announced, waiting):
        assert night.code == 0 and "stale adjusted" not in night.out, night.out[-600:]
    # February, last read on 2024-03-01's night, is on the old basis once the split is in force
    assert executed.code == 1 and "stale adjusted: 1 unit " in executed.out, executed.out[-600:]
    assert "CHAR 2024-02: split on 2024-03-06" in executed.out
    assert retried.out.startswith("1 stale units are pending again"), retried.out
    assert cured.code == 0 and "stale adjusted" not in cured.out, cured.out[-600:]


def test_a_split_entered_after_its_date_makes_the_months_fetched_before_it_stale(work, monkeypatch):
    """sync_refs looks back 31 days so that "a split entered late, after its date, is still
    picked up": CHAR's 1:2 split of 2024-03-01 reaches the API on 2024-03-05. CHAR's February,
    fetched on the night of 2024-03-04, holds the prices of before the API knew of it; it
    was judged against the execution date only (fetched after it): never stale, never
    fetched again. Fetched before the split was first recorded, within 31 days of it, it is."""
    with StandInServer(_char_splits(), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "splits")
        first = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)
        assert first.code == 0, first.out + first.err
        server.market = _char_splits(Split(dt.date(2024, 3, 1), 1, 2))  # entered late
        second = _sync_at(server.url, "2024-03-05T22:30:00-05:00", monkeypatch)
    assert "queued again for records announced since fetched (CHAR)" in second.out, second.out
    stored = read_dataset(Path("data"), "minute").filter(pl.col("ticker") == "CHAR")
    feb_stored = stored.filter(pl.col("timestamp") < dt.datetime(2024, 3, 1, 5, tzinfo=dt.timezone.utc))
    now_served = truth(
        server.market, "minute", "CHAR", dt.date(2024, 2, 26), dt.date(2024, 2, 29), adjusted=True
    )
    assert feb_stored["close"].to_list() != now_served["close"].to_list()  # the old basis
    assert second.code == 1 and "stale adjusted" in second.out, second.out[-400:]
    with Ledger("ledger.db", create=False) as ledger:
        assert [(r.ticker, r.period) for r in ledger.query(
            "SELECT ticker, period FROM units WHERE dataset = 'minute' AND state = 'done' ORDER BY 1, 2"
        ) if r.ticker == "CHAR"] == [("CHAR", "2024-02"), ("CHAR", "2024-03")]  # fmt: skip


@pytest.mark.parametrize(
    ("dataset", "first", "corrected", "field", "value"),
    [
        ("splits", Split(CORRECTED_ON, 1, 3), Split(CORRECTED_ON, 1, 2, corrected_from=(1, 3)), "split_to", 2.0),
        ("dividends", Dividend(CORRECTED_ON, 0.52), Dividend(CORRECTED_ON, 0.25, corrected_from=0.52), "cash_amount", 0.25),
    ],
)  # fmt: skip
def test_a_record_the_api_corrected_under_its_id_is_fetched_again(
    work, monkeypatch, dataset, first, corrected, field, value
):
    """The provider fixes a split's ratio or a dividend's amount in place, under the same
    id (polygon-io/issues#51: "I went ahead and corrected the existing splits"). sync's
    refresh compared ids only: the listing's id was in CHAR's file, so the unit was never
    fetched again, and the ledger kept the wrong 1:3 (or 0.52) for good: every adjusted
    read of CHAR wrong, silently. A record the listing shows saying something else than
    the file's record of its id (what NATURAL_KEY compares) queues the unit again."""
    records = f"{dataset[:-1]}_records"  # split_records, dividend_records
    wrong = getattr(_char_with(**{dataset: (first,)}), records)("CHAR")
    with StandInServer(_char_with(**{dataset: (first,)}), api_keys=(API_KEY,)) as server:
        _planned(server.url, dataset)
        assert _sync_at(server.url, FIRST_NIGHT, monkeypatch).code == 0
        server.market = _char_with(**{dataset: (corrected,)})
        assert [r["id"] for r in getattr(server.market, records)("CHAR")] == [r["id"] for r in wrong]
        second = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
        stored = pl.read_parquet(Path("data") / dataset / "ticker=CHAR" / "part.parquet")
        third = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)
    assert "1 queued again for records announced since fetched (CHAR)" in second.out, (
        f"CHAR's {dataset} file still says {field} {stored[field].to_list()}, the API {value}: {second.out}"
    )
    assert second.code == 0, second.out
    assert stored[field].to_list() == [value]
    if dataset == "splits":
        with Ledger("ledger.db", create=False) as ledger:
            held = [
                tuple(r)
                for r in ledger.query("SELECT ticker, execution_date, split_from, split_to FROM splits")
            ]
        assert held == [("CHAR", CORRECTED_ON.isoformat(), 1.0, 2.0)]
    # fetched again, the file says what the listing says: not queued again night after night
    assert f"planned {dataset}: 0 new tickers; 0 queued again" in third.out, third.out


def test_a_record_without_an_id_is_never_taken_for_withdrawn(tmp_path, monkeypatch):
    """sync_refs tells a withdrawn record by its id missing from the listing: a file's
    record without an id (an older answer) inside the window would look withdrawn every
    night, its unit fetched again each time; only records with ids are compared."""
    from types import SimpleNamespace

    from polyledger import sync_refs
    from polyledger.storage import BarStore

    store = BarStore(tmp_path / "data")
    store.ensure_writable()
    frame = pl.DataFrame(
        {"ticker": ["CHAR", "CHAR"], "execution_date": [dt.date(2024, 3, 11), dt.date(2024, 3, 12)],
         "split_from": [1.0, 1.0], "split_to": [2.0, 3.0], "adjustment_type": ["forward_split"] * 2,
         "id": [None, "S1"]},
        schema={"ticker": pl.String, "execution_date": pl.Date, "split_from": pl.Float64,
                "split_to": pl.Float64, "adjustment_type": pl.String, "id": pl.String},
    )  # fmt: skip
    s1 = ("S1", "CHAR", dt.date(2024, 3, 12), 1.0, 3.0, "forward_split")  # as the listing gives it
    store._put("splits/ticker=CHAR/part.parquet", _parquet_bytes(frame))
    unit = SimpleNamespace(ticker="CHAR", state="done", file_path="splits/ticker=CHAR/part.parquet")
    monkeypatch.setattr(sync_refs.queries, "settled_reference_units", lambda ledger, dataset: [unit])
    monkeypatch.setattr(sync_refs.queries, "tickers_with_splits_since", lambda ledger, since: {"CHAR"})
    monkeypatch.setattr(sync_refs, "since_when", lambda ledger, dataset: dt.date(2024, 3, 1))
    queued: list[list[str]] = []
    ledger = SimpleNamespace(reset_settled=lambda dataset, tickers: queued.append(tickers),
                             set_setting=lambda key, value: None)  # fmt: skip
    monkeypatch.setattr(sync_refs, "announced", lambda client, dataset, since: {"CHAR": {s1}})
    assert sync_refs.refresh(ledger, store, None, "splits", dt.date(2024, 3, 20)).changed == []  # type: ignore[arg-type]
    monkeypatch.setattr(sync_refs, "announced", lambda client, dataset, since: {})  # S1 withdrawn
    assert sync_refs.refresh(ledger, store, None, "splits", dt.date(2024, 3, 20)).changed == ["CHAR"]  # type: ignore[arg-type]


def test_a_failed_splits_refresh_does_not_cost_the_nights_bars(work, monkeypatch):
    """The splits refresh (`sync_refs.announced`, one market-wide listing) fails after its
    retries (the reference endpoint answers 503 tonight). It was called from Sync._plan with
    no handling, so the exception left `_phases` before the run: the minute month planned a
    moment earlier was never fetched, no bar of the night was synced, and the audit never
    printed. A reference listing's outage fails the night's exit code (exit 1, said in one
    line), not the bars the researchers read tomorrow; and the next night asks again from
    the last check that worked (found by a review)."""
    market = SyntheticMarket([Listing("ALFA", bars_per_day=3), Listing("CHAR", bars_per_day=3)], seed=5)
    asked: list[dt.date] = []  # the `since` of each listing asked
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        built = run_cli("universe", "--out", "universe.csv", "--date", "2024-02-28", "--base-url", server.url)
        assert built.code == 0, built.out + built.err
        for args in (
            ["--dataset", "minute", "--from", "2024-02-26", "--to", "2024-02-28"],
            ["--dataset", "splits"],
        ):
            assert run_cli("plan", "--universe", "universe.csv", *args).code == 0
        first = run_cli("sync", "--now", FIRST_NIGHT, "--base-url", server.url)
        assert first.code == 0, first.out + first.err  # splits settled: the next night refreshes

        def outage(client, dataset, since):  # type: ignore[no-untyped-def]
            asked.append(since)
            raise TransientError(
                "server error 503: service unavailable", error_class="http_503", http_status=503
            )

        real = sync_refs.announced
        monkeypatch.setattr(sync_refs, "announced", outage)
        second = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", server.url)
        with Ledger("ledger.db", create=False) as ledger:
            march = {
                r.ticker: r.state
                for r in ledger.query(
                    "SELECT ticker, state FROM units WHERE dataset = 'minute' AND period = '2024-03'"
                )
            }
            mark = ledger.setting(sync_refs.checked_key("splits"))
        monkeypatch.setattr(sync_refs, "announced", lambda *a: (asked.append(a[2]), real(*a))[1])
        third = run_cli("sync", "--now", "2024-03-04T22:30:00-05:00", "--base-url", server.url)
    assert march == {"ALFA": "done", "CHAR": "done"}, (
        f"exit {second.code}; 2024-03-01's minute units: {march} (the night's bars were not synced "
        f"because the splits listing failed); stderr: {second.err.strip()[:200]}"
    )
    assert second.code == 1, "the failed refresh must show in the exit code"
    said = [line for line in second.out.splitlines() if "not checked" in line]
    assert said == [
        "planned splits: 0 new tickers; splits announced or withdrawn since fetched not checked "
        "(server error 503: service unavailable): adjusted prices of 2 tickers (ALFA, CHAR) may be "
        "on an old basis, unseen by audit; the next sync checks again (exit 1)",
        # and again last, below the audit's "COMPLETE": a log's tail says why it exits 1
        "exit 1: the splits announced since were not checked (see the plan line above)",
    ], second.out
    assert second.out.rstrip().splitlines()[-1] == said[-1]
    assert "minute: COMPLETE" in second.out and second.err == ""  # the audit, no error
    # the failed check is not remembered as done: the next night asks from the same date
    assert mark is None
    assert third.code == 0 and "planned splits: 0 new tickers; 0 queued again" in third.out, third.out
    assert len(asked) == 2 and asked[1] == asked[0]
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.setting(sync_refs.checked_key("splits")) == "2024-03-04"


@pytest.mark.parametrize(
    "fatal",
    [AuthError("the API key was refused (401: bad key); check POLYGON_API_KEY"),
     CircuitOpen("the API kept failing for 300 s")],
)  # fmt: skip
def test_a_refresh_that_fails_fatally_still_stops_the_sync_at_once(work, monkeypatch, fatal):
    """A refresh's failure that is no listing's (a refused key, an API down for minutes)
    stops the sync where it is, as a run does: nothing run, no audit, exit 1."""
    with StandInServer(
        SyntheticMarket([Listing("ALFA", bars_per_day=3)], seed=5), api_keys=(API_KEY,)
    ) as server:
        _planned(server.url, "minute", "splits")
        assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", server.url).code == 0

        def refused(client, dataset, since):  # type: ignore[no-untyped-def]
            raise fatal

        monkeypatch.setattr(sync_refs, "announced", refused)
        second = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", server.url)
    assert second.code == 1 and second.err == f"error: {fatal}\n", second.err
    assert "COMPLETE" not in second.out and "not checked" not in second.out
    assert _units()[("minute", "ALFA", "2024-03")][2] == "pending"
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME) is None


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("data", ["memory://x", ""])
def test_sync_refuses_a_data_location_that_keeps_nothing(work, data):
    """As `run`: files in memory:// are gone when the command ends (their units would be
    `done`), and '' would be the current folder by accident (found by a review)."""
    refused = run_cli("sync", "--data", data)
    assert refused.code == 2 and "Invalid value for '--data'" in refused.err, refused.err
    assert not (work / "ledger.db").exists()


def test_a_sync_refused_another_data_folder_plans_nothing(work, stand_in):
    """`sync --data elsewhere` on a ledger whose files are in ./data is refused (one ledger,
    one data folder), and refused before planning: exit 2 promises nothing changed, and the
    next night's units were planned first (found by a review)."""
    _planned(stand_in.url, "minute", "grouped_daily")
    assert run_cli("sync", "--now", FIRST_NIGHT, "--base-url", stand_in.url, "--workers", "2").code == 0
    units = _units()
    refused = run_cli("sync", "--now", NEXT_NIGHT, "--base-url", stand_in.url, "--data", "elsewhere")
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.out + refused.err
    assert _units() == units


def test_a_split_the_api_lists_on_two_dates_is_not_fetched_again_every_night(tmp_path, monkeypatch):
    """Found by a review. The API lists
    one 10-for-1 split on two dates (SHOP's, 2022-06-22 and 2022-06-29); `copy_to_ledger`
    keeps the real date's record in the file and drops the other (`one_date_each`). The
    market-wide listing sync compares with still shows both: the dropped record is "a
    record the file does not hold", so the splits unit is queued again every night the
    two dates are inside the lookback (about five weeks), fetched, the record dropped
    again, and queued again the next night."""
    import io
    from types import SimpleNamespace

    from polyledger.storage import BarStore

    store = BarStore(tmp_path / "data")
    store.ensure_writable()
    kept = pl.DataFrame(
        {"ticker": ["SHOP"], "execution_date": [dt.date(2022, 6, 29)], "split_from": [1.0], "split_to": [10.0],
         "adjustment_type": ["forward_split"], "historical_adjustment_factor": [0.1], "id": ["S-29"]},
        schema={"ticker": pl.String, "execution_date": pl.Date, "split_from": pl.Float64, "split_to": pl.Float64,
                "adjustment_type": pl.String, "historical_adjustment_factor": pl.Float64, "id": pl.String},
    )  # fmt: skip
    buffer = io.BytesIO()
    kept.write_parquet(buffer)
    store._put("splits/ticker=SHOP/part.parquet", buffer.getvalue())
    listed = {
        (
            "S-22",
            "SHOP",
            dt.date(2022, 6, 22),
            1.0,
            10.0,
            "forward_split",
        ),  # the record one_date_each dropped
        ("S-29", "SHOP", dt.date(2022, 6, 29), 1.0, 10.0, "forward_split"),
    }
    unit = SimpleNamespace(ticker="SHOP", state="done", file_path="splits/ticker=SHOP/part.parquet")
    monkeypatch.setattr(sync_refs.queries, "settled_reference_units", lambda ledger, dataset: [unit])
    monkeypatch.setattr(sync_refs.queries, "tickers_with_splits_since", lambda ledger, since: {"SHOP"})
    monkeypatch.setattr(sync_refs, "since_when", lambda ledger, dataset: dt.date(2022, 6, 1))
    monkeypatch.setattr(sync_refs, "announced", lambda client, dataset, since: {"SHOP": listed})
    queued: list[list[str]] = []
    ledger = SimpleNamespace(
        reset_settled=lambda dataset, tickers: queued.append(tickers), set_setting=lambda key, value: None
    )
    nights = [
        sync_refs.refresh(ledger, store, None, "splits", dt.date(2022, 7, 1 + n)).changed for n in range(3)
    ]  # type: ignore[arg-type]
    assert nights == [[], [], []], f"SHOP's splits unit queued again night after night: {nights}"


def test_dividends_announced_for_more_tickers_than_sqlite_binds_at_once_requeue_each_ones_unit(
    tmp_path, monkeypatch
):
    """A month without a sync: dividends announced since for 2,000 tickers. `refresh` queued
    their settled units in one IN list, past the 999 bound variables of a SQLite before 3.32
    (RHEL 8's system SQLite; 32766 since, which a universe's worth of corrections passes):
    the sync stopped ('too many SQL variables') before its check was remembered, the same
    every night. The tickers are reset in slices: each one's unit queued, no other."""
    tickers = [f"T{i:04d}" for i in range(2_000)]
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.add_units(
            PlannedUnit("dividends", t, dt.date(2003, 1, 1), dt.date(2024, 2, 28), "all")
            for t in ["QUIET", *tickers]
        )
        claimed = ledger.claim("w", 60, limit=len(tickers) + 1)
        ledger.settle_fetched(
            [FetchedUnit(unit, AttemptRecord(), None) for unit in claimed], None
        )  # none held
        at_stock_sqlite_limit(ledger, OLD_SQLITE_VARIABLES)
        record = ("D1", dt.date(2024, 3, 1), 0.25)
        monkeypatch.setattr(
            sync_refs, "announced", lambda client, dataset, since: {t: {record} for t in tickers}
        )
        assert sync_refs.refresh(ledger, None, None, "dividends", dt.date(2024, 3, 20)).changed == tickers  # type: ignore[arg-type]
        states = {row.ticker: row.state for row in ledger.query("SELECT ticker, state FROM units")}
        assert ledger.setting(sync_refs.checked_key("dividends")) == "2024-03-20"
    assert states == {"QUIET": "empty_confirmed", **dict.fromkeys(tickers, "pending")}


def _stored_minutes(ticker: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    stored = read_dataset(Path("data"), "minute").filter(pl.col("ticker") == ticker)
    start = dt.datetime.combine(first, dt.time(5), tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(5), tzinfo=dt.timezone.utc)
    return stored.filter((pl.col("timestamp") >= start) & (pl.col("timestamp") < end))


def test_a_split_withdrawn_after_it_executed_queues_the_months_read_on_its_basis(work, monkeypatch):
    """CHAR's 1:2 split is announced for Friday 2024-03-01's open; Friday night's sync
    records it and reads February again (its 29th was read too soon): the file holds
    February halved. The provider then withdraws the split: Monday night's refresh sees
    it gone, the ledger's `splits` drops it, and February, read on the withdrawn split's
    basis, was judged by no split: never stale, never read again, CHAR's February and
    March on two share bases, sync exit 0 (a review, 2026-12-02). A split no longer
    listed after its open queues the adjusted units read since, before its date."""
    feb = dt.date(2024, 2, 26), dt.date(2024, 2, 29)
    with StandInServer(_char_splits(), api_keys=(API_KEY,)) as server:
        _planned(server.url, "minute", "splits")
        assert _sync_at(server.url, FIRST_NIGHT, monkeypatch).code == 0
        server.market = _char_splits(Split(dt.date(2024, 3, 1), 1, 2))  # for Friday's open
        friday = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
        assert friday.code == 0, friday.out + friday.err
        halved = truth(server.market, "minute", "CHAR", *feb, adjusted=True)
        assert _stored_minutes("CHAR", *feb)["close"].to_list() == halved["close"].to_list()
        server.market = _char_splits()  # withdrawn
        monday = _sync_at(server.url, "2024-03-04T22:30:00-05:00", monkeypatch)
        served = truth(server.market, "minute", "CHAR", *feb, adjusted=True)
    assert "1 queued again for records announced since fetched (CHAR)" in monday.out, monday.out
    with Ledger("ledger.db", create=False) as ledger:
        assert ledger.query("SELECT * FROM splits") == []
    stored = _stored_minutes("CHAR", *feb)
    assert stored.height == served.height > 0
    assert stored["close"].to_list() == served["close"].to_list(), monday.out[-800:]
    assert monday.code == 0, monday.out[-800:]


def test_a_reference_file_that_cannot_be_read_is_fetched_again_and_the_nights_bars_still_are(
    work, monkeypatch
):
    """The refresh reads every done dividends unit's file each night; one that cannot be
    read (deleted by hand, damaged, an object store's failed GET) raised out of the night
    before its run: the night's new session never fetched, no audit, a traceback for cron,
    and so every night (a review, 2026-12-02). Its unit is queued again to be fetched
    whole, said, and the night goes on."""
    market = _char_with(dividends=(Dividend(dt.date(2024, 2, 14), 0.25),))
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        _planned(server.url, "grouped_daily", "dividends")
        first = _sync_at(server.url, FIRST_NIGHT, monkeypatch)
        assert first.code == 0, first.out + first.err
        (Path("data") / "dividends" / "ticker=CHAR" / "part.parquet").unlink()
        second = _sync_at(server.url, NEXT_NIGHT, monkeypatch)
    assert second.code == 0, second.out + second.err
    assert "1 whose file could not be read queued again to be fetched whole (CHAR)" in second.out, second.out
    with Ledger("ledger.db", create=False) as ledger:
        states = {
            (row.dataset, row.period): row.state
            for row in ledger.query(
                "SELECT dataset, period, state FROM units WHERE dataset IN ('grouped_daily', 'dividends')"
            )
        }
    assert states[("grouped_daily", "2024-03-01")] == "done", states
    assert (Path("data") / "dividends" / "ticker=CHAR" / "part.parquet").exists()


def test_forgetting_splits_while_adjusted_bars_are_synced_is_refused(work, monkeypatch):
    """`sync --forget splits` alone left the adjusted minute bars sync goes on fetching
    without the splits their stale check reads: CHAR's January, read the night before a
    1:2 split, stayed on the old basis and every night exited 0 (a review, 2026-12-02).
    Refused in one line, exit 2, naming what to forget with it; forgetting both works."""
    with StandInServer(_char_splits(), api_keys=(API_KEY,)) as server:
        _char_universe_planned(server.url)
        assert _sync_at(server.url, FIRST_NIGHT, monkeypatch).code == 0
    refused = run_cli("sync", "--forget", "splits")
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert "adjusted minute bars" in refused.err and "--forget minute --forget splits" in refused.err
    with Ledger("ledger.db", create=False) as ledger:
        assert {plan.dataset for plan in ledger.remembered_plans()} >= {"minute", "splits"}
    both = run_cli("sync", "--forget", "minute", "--forget", "splits")
    assert both.code == 0, both.err

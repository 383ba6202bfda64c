"""The PostgreSQL ledger: same schema as SQLite, claims that never overlap across processes,
read-only `sql`, `migrate`, export/import round trips, and a full run.

Needs a server: POLYLEDGER_TEST_PG_URL=postgresql://user:password@host:port/database (a role
that may CREATE DATABASE); every test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from support import (
    API_KEY,
    LISTINGS,
    UNKNOWN,
    cli_command,
    ctrl_c,
    python_env,
    read_dataset,
    run_cli,
    skip_unless_required,
    truth,
    wait_for,
    write_universe,
)
from test_claims_concurrency import assert_no_double_claims_across_two_processes
from test_crash import KILLED_COPY
from test_download import check_units_of_many_tickers, many_tickers
from test_plan_windows import check_unplanned_days
from test_queries import busy_ledger, documented  # noqa: F401 - busy_ledger is a fixture
from test_reference import check_split_under_later_symbol_stales_earlier
from test_replan_reaches_listings import check_sources_of_many_symbols
from test_sync import check_re_reads

from polyledger.ledger import AttemptRecord, Ledger, StoredFile, UnitState, new_owner_id
from polyledger.ledger.models import SQLModel
from polyledger.plan import plan

ENV = "POLYLEDGER_TEST_PG_URL"
THREADS = 8
TABLES = (
    "units",
    "unit_attempts",
    "runs",
    "settings",
    "splits",
    "quality_flags",
    "listings",
    "unattributed_bars",
    "planned",
    "universe_builds",
    "sync_lock",
    "key_rates",
    "key_members",
    "flat_files",
    "unwidened",
)


def _admin_url() -> str:
    url = os.environ.get(ENV)
    if not url:
        skip_unless_required(f"{ENV} is not set: no PostgreSQL server to test against")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        skip_unless_required(f"PostgreSQL at {ENV} is unreachable: {type(exc).__name__}")
    return url


@pytest.fixture(scope="session")
def admin_url() -> str:
    return _admin_url()


def assert_no_password(text: str, url: str) -> None:
    password = urlsplit(url).password
    if password:
        assert f":{password}@" not in text and url not in text


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
def new_database(admin_url):  # type: ignore[no-untyped-def]
    """A factory of fresh, empty databases (URLs), all dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"polyledger_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return _with_database(admin_url, name)

    yield make
    with psycopg.connect(admin_url, autocommit=True) as connection:
        for name in made:
            _drop_database(connection, name)


def _drop_database(connection: psycopg.Connection, name: str) -> None:
    """Drop a test database whatever still uses it. Our own role's sessions (a pool a test
    left open) are ended first; a plain DROP then stops an autovacuum worker by itself,
    where `WITH (FORCE)` would refuse a non-superuser ("must be a member of the role whose
    process is being terminated") when autovacuum happened to be in that database."""
    connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND usename = current_user AND pid != pg_backend_pid()",
        (name,),
    )
    connection.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def pg_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return new_database()


def _schema(engine) -> dict:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    inspector = inspect(engine)
    return {
        table: {
            "columns": {
                c["name"]: (c["nullable"], c["type"].python_type) for c in inspector.get_columns(table)
            },
            "indexes": sorted(
                i["name"] for i in inspector.get_indexes(table) if not i.get("duplicates_constraint")
            ),
            "unique": sorted(c["name"] for c in inspector.get_unique_constraints(table)),
        }
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


# --- schema -----------------------------------------------------------------------------


def test_migrations_create_the_same_tables_and_columns_as_sqlite_and_the_models(pg_url, tmp_path):
    with Ledger(pg_url) as pg, Ledger(tmp_path / "ledger.db") as lite:
        assert pg.dialect == "postgresql" and pg.path is None and "polyledger_t_" in pg.name
        pg_schema, lite_schema = _schema(pg.engine), _schema(lite.engine)
        revisions = [ledger.query("SELECT version_num FROM alembic_version")[0][0] for ledger in (pg, lite)]
    assert revisions[0] == revisions[1]
    assert set(pg_schema) == set(TABLES)
    assert pg_schema == lite_schema
    for table in TABLES:
        model = SQLModel.metadata.tables[table]
        assert set(pg_schema[table]["columns"]) == {c.name for c in model.columns}, table
        for column in model.columns:
            assert pg_schema[table]["columns"][column.name][0] == column.nullable, (table, column.name)


def test_unreachable_server_and_bad_urls_are_one_line_errors_without_the_password(tmp_path):
    secret = "s3cr3t-pw"
    result = run_cli("status", "--ledger", f"postgresql://someone:{secret}@127.0.0.1:1/nothing")
    assert result.code == 2
    assert result.err.startswith("error: cannot open the ledger postgresql://someone:***@127.0.0.1:1/nothing")
    assert secret not in result.err + result.out and result.err.count("\n") == 1
    result = run_cli("status", "--ledger", f"postgresql://someone:{secret}@127.0.0.1:99999/x")
    assert result.code == 2 and "invalid ledger URL" in result.err and secret not in result.err
    result = run_cli("status", "--ledger", "mysql://a:b@host/db")
    assert result.code == 2 and "unsupported ledger URL" in result.err and ":b@" not in result.err


def test_wrong_password_is_refused_without_echoing_it(admin_url):
    parts = urlsplit(admin_url)
    netloc = f"{parts.username}:wrong-Pa55word@{parts.hostname}:{parts.port or 5432}"
    result = run_cli("status", "--ledger", urlunsplit(parts._replace(netloc=netloc)))
    assert result.code == 2
    assert "wrong-Pa55word" not in result.err + result.out and result.err.count("\n") == 1


def test_a_database_that_does_not_exist_says_how_to_make_it(admin_url, tmp_path):
    missing = _with_database(admin_url, "polyledger_no_such_database")
    Ledger(tmp_path / "source.db").close()  # an empty SQLite ledger to export
    source = str(tmp_path / "source.db")
    for command in (["status", "--ledger", missing], ["export", "--ledger", source, "--to", missing]):
        result = run_cli(*command)
        assert result.code == 2 and result.err.count("\n") == 1, result.err
        assert "does not exist" in result.err and result.err.rstrip().endswith(
            " polyledger_no_such_database)"
        )
        assert "(create it first: createdb -h " in result.err and " -U " in result.err
        assert_no_password(result.err, admin_url)
    # the name the server reports, quoted for a shell (here from a percent-encoded URL path)
    odd = _with_database(admin_url, "no%20such")
    result = run_cli("status", "--ledger", odd)
    assert result.code == 2 and result.err.rstrip().endswith(" 'no such')"), result.err


# --- the hot path -----------------------------------------------------------------------


def test_plan_claim_settle_audit_retry_on_postgres(pg_url):
    from polyledger.checks.audit import audit, status_counts
    from polyledger.requeue import retry_failed

    with pytest.raises(Exception, match="no ledger at"):
        Ledger(pg_url, create=False)
    with Ledger(pg_url) as ledger:
        # clipped months first, then the whole months: widened in place
        plan(ledger, ["AAA", "BBB"], "minute", dt.date(2023, 1, 15), dt.date(2023, 3, 10))
        result = plan(ledger, ["AAA", "BBB"], "minute", dt.date(2023, 1, 1), dt.date(2023, 3, 31))
        assert result.widened == 4
        assert ledger.query("SELECT min(period_start), max(period_end) FROM units")[0] == (
            "2023-01-01",
            "2023-03-31",
        )
        owner = new_owner_id()
        claimed = ledger.claim(owner, 60, limit=4, datasets=["minute"])
        assert [(u.ticker, u.period_start.month) for u in claimed] == [
            ("AAA", 1),
            ("AAA", 2),
            ("AAA", 3),
            ("BBB", 1),
        ]
        following = ledger.claim_following(owner, 60, claimed[-1], 5)
        assert [u.period_start.month for u in following] == [2, 3]
        assert ledger.heartbeat(owner, 120) == 6
        stored = StoredFile("minute/x.parquet", 10, "sha256:00", 100)
        ledger.settle_done(claimed[0], stored, True, AttemptRecord(requests=2, bars=10))
        assert ledger.settle_fetched(
            [
                __import__("polyledger.ledger", fromlist=["FetchedUnit"]).FetchedUnit(
                    u, AttemptRecord(), None
                )
                for u in (following[1], claimed[1])
            ],
            True,
        ) == [True, True]
        ledger.settle_failed(claimed[2], AttemptRecord(error="403", error_class="not_entitled"))
        ledger.requeue(claimed[3], AttemptRecord(error="503", error_class="http_503"))
        assert ledger.release(following[0], undo_attempt=True)
        assert ledger.claim_setting("adjusted", "true") == "true"
        assert ledger.claim_setting("adjusted", "false") == "true"
        assert ledger.counts() == {"minute": {"done": 1, "empty_confirmed": 2, "failed": 1, "pending": 2}}
        assert ledger.open_work("someone", ["minute"]) == (2, 0)
        report = audit(ledger)
        (minute,) = report.datasets
        assert minute.by_state["failed"] == 1 and minute.rows == 10 and report.exit_code == 1
        assert [f.error_class for f in minute.failures] == ["not_entitled"]
        assert sum(row["units"] for row in status_counts(ledger)) == 6
        assert retry_failed(ledger, "not_entitled") == 1
        attempts = ledger.query("SELECT outcome, count(*) AS n FROM unit_attempts GROUP BY outcome")
        assert dict((r.outcome, r.n) for r in attempts) == {
            "done": 1,
            "empty_confirmed": 2,
            "failed": 1,
            "pending": 1,
        }
        # leases expire: their units go back to pending
        late = ledger.claim(owner, 60, limit=1)
        ledger.clock = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        assert ledger.reclaim_expired() == [(late[0].dataset, late[0].ticker, late[0].period_start)]
        with pytest.raises(Exception, match="no longer ours"):
            ledger.settle_empty(late[0], True, AttemptRecord())


def test_audit_reports_unplanned_days_on_postgres(pg_url):
    with Ledger(pg_url) as ledger:  # its day arithmetic is the dialect's
        check_unplanned_days(ledger)


def test_the_files_of_more_changed_symbols_than_postgres_binds_at_once_are_found(pg_url):
    """40,000 symbols and their securities: 80,000 parameters in one statement were more
    than PostgreSQL's protocol carries (65535)."""
    with Ledger(pg_url) as ledger:
        check_sources_of_many_symbols(ledger)


# every US symbol ever listed, delisted ones too: more than PostgreSQL's protocol carries
# in one statement (65535 parameters)
POSTGRES_MANY = 70_000


def test_the_units_of_more_tickers_than_postgres_binds_at_once_are_selected_in_order(pg_url):
    """A read's selection and check of its tickers, each in one IN list, failed past
    65535 tickers ('number of parameters must be between 0 and 65535')."""
    with Ledger(pg_url) as ledger:
        check_units_of_many_tickers(ledger, many_tickers(POSTGRES_MANY))


def test_no_double_claims_across_two_processes_and_16_threads_on_postgres(pg_url):
    assert_no_double_claims_across_two_processes(pg_url)


def test_sync_re_reads_units_read_too_soon_on_postgres(pg_url):
    """The re-read's one UPDATE (its RETURNING, ISO texts compared as times) on PostgreSQL."""
    check_re_reads(pg_url)


def test_a_split_listed_under_a_later_symbol_stales_the_earlier_symbols_units_on_postgres(pg_url):
    """The stale query's bound table of splits matched to another symbol of their security
    (VALUES of untyped parameters beside dates and texts) on PostgreSQL."""
    check_split_under_later_symbol_stales_earlier(pg_url)


# --- sql, migrate ------------------------------------------------------------------------


def test_sql_is_read_only_on_postgres(pg_url):
    with Ledger(pg_url) as ledger:
        plan(ledger, ["AAA"], "minute", dt.date(2023, 1, 1), dt.date(2023, 3, 31))
    result = run_cli(
        "sql", "--format", "json", "--ledger", pg_url, "SELECT state, count(*) AS n FROM units GROUP BY state"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == [{"state": "pending", "n": 3}]
    csv = run_cli(
        "sql",
        "--format",
        "csv",
        "--ledger",
        pg_url,
        "SELECT ticker FROM units WHERE ticker LIKE 'A%' LIMIT 1",
    )
    assert csv.code == 0 and csv.out == "ticker\nAAA\n"
    for write in (
        "DELETE FROM units",
        "UPDATE units SET state = 'done'",
        "SET TRANSACTION READ WRITE",
        "SELECT 1; DELETE FROM units",
        "CREATE TABLE x (a int)",
    ):
        refused = run_cli("sql", "--ledger", pg_url, write)
        assert refused.code == 2, write
        assert refused.err.startswith("error: SQL error:") and refused.err.count("\n") == 1, refused.err
    assert "read-only" in run_cli("sql", "--ledger", pg_url, "DELETE FROM units").err
    with Ledger(pg_url, create=False) as ledger:
        assert ledger.counts() == {"minute": {"pending": 3}}
    assert API_KEY not in result.out
    bad = run_cli("sql", "--ledger", pg_url, "SELECT nope FROM units")
    assert bad.code == 2 and "nope" in bad.err
    assert_no_password(bad.err, pg_url)


def test_migrate_upgrades_either_backend_and_refuses_a_newer_schema(new_database, tmp_path):
    from alembic import command
    from sqlalchemy import create_engine

    from polyledger.ledger.database import _migrations_config, head_revision, sqlalchemy_url

    head = head_revision()
    empty = new_database()
    result = run_cli("migrate", "--ledger", empty)
    assert result.code == 0, result.err
    assert f"schema migrated from none to {head}" in result.out
    assert_no_password(result.out, empty)
    assert f"schema already at {head}" in run_cli("migrate", "--ledger", empty).out

    # an older ledger on each backend: revision 0003
    old_pg = new_database()
    old_lite = tmp_path / "old.db"
    for url in (sqlalchemy_url(old_pg), f"sqlite:///{old_lite}"):
        engine = create_engine(url)
        with engine.begin() as connection:
            config = _migrations_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
        engine.dispose()
    for location in (old_pg, str(old_lite)):
        result = run_cli("migrate", "--ledger", location)
        assert result.code == 0, result.err
        assert f"from 0003 to {head}" in result.out
    with Ledger(old_pg, create=False) as ledger:
        assert ledger.query("SELECT count(*) FROM quality_flags")[0][0] == 0

    # a ledger from a newer polyledger is refused, one line
    with psycopg.connect(empty, autocommit=True) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    newer = run_cli("migrate", "--ledger", empty)
    assert newer.code == 2 and "newer than this polyledger knows" in newer.err and newer.err.count("\n") == 1
    assert run_cli("migrate", "--ledger", str(tmp_path / "missing.db")).code == 2


# --- export / import ------------------------------------------------------------------


def _dump_sqlite(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in TABLES
        }


def test_export_to_postgres_and_import_back_round_trips_every_table(demo_download, new_database, tmp_path):
    source = demo_download / "ledger.db"
    original = _dump_sqlite(source)
    assert all(original[t] for t in ("units", "unit_attempts", "runs", "settings", "splits"))
    target = new_database()
    exported = run_cli("export", "--ledger", source, "--to", target)
    assert exported.code == 0, exported.err
    assert f"{len(original['units']):,} units" in exported.out
    assert_no_password(exported.out, target)

    with Ledger(target, create=False) as ledger:
        assert ledger.query("SELECT count(*) FROM units")[0][0] == len(original["units"])
        # sequences follow the copied ids: new rows get new ids
        plan(ledger, ["ZZZNEW"], "minute", dt.date(2023, 1, 1), dt.date(2023, 1, 31))
        assert ledger.query("SELECT max(id) FROM units")[0][0] == len(original["units"]) + 1
        ledger.query("SELECT 1")
    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute("DELETE FROM units WHERE ticker = 'ZZZNEW'")
        connection.execute("DELETE FROM listings WHERE ticker = 'ZZZNEW'")  # the plan recorded it
        connection.execute(
            "SELECT setval(pg_get_serial_sequence('units', 'id'), (SELECT max(id) FROM units) + 1, false)"
        )

    back = tmp_path / "back.db"
    imported = run_cli("import", "--from", target, "--ledger", back)
    assert imported.code == 0, imported.err
    assert _dump_sqlite(back) == original

    # a target with data is refused; so is a copy while a run holds leases
    again = run_cli("export", "--ledger", source, "--to", target)
    assert again.code == 2 and "is not empty" in again.err and again.err.count("\n") == 1
    with Ledger(back, create=False) as ledger:
        plan(ledger, ["ZZZNEW"], "minute", dt.date(2023, 1, 1), dt.date(2023, 1, 31))
        assert len(ledger.claim(new_owner_id(), 600, limit=1)) == 1
    busy = run_cli("export", "--ledger", back, "--to", new_database())
    assert busy.code == 2 and "a run holds 1 unit " in busy.err


def test_an_export_to_postgres_killed_midway_leaves_the_ledger_empty(work, new_database):
    """An export killed midway (kill -9: no handler runs) left a PostgreSQL ledger with the
    tables committed so far (each table was a transaction of its own), which `status` took
    for a whole ledger, and a second export was refused as "not empty" (found by a review).
    The copy is one transaction: the server rolls it back when the connection dies."""
    write_universe(work / "u.csv", [f"T{number:03d}" for number in range(40)])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-12-31").code == 0
    target = new_database()
    killed = subprocess.run(
        # once units, unit_attempts, runs, settings, splits and quality_flags are written
        [sys.executable, "-c", KILLED_COPY, "ledger.db", target, "listings:0"],
        cwd=work,
        env=python_env(),
        timeout=120,
    )
    assert killed.returncode == 137
    with psycopg.connect(target, autocommit=True) as connection:
        for table in TABLES:
            assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    again = run_cli("export", "--to", target)
    assert again.code == 0 and "480 units" in again.out, again.err
    with Ledger(target, create=False) as ledger:
        assert ledger.query("SELECT count(*) FROM units")[0][0] == 480


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT as a terminal's Ctrl-C does")
@pytest.mark.parametrize(
    "inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"]
)
def test_ctrl_c_stops_a_long_sql_query_on_postgres(pg_url, admin_url, inherited):
    """Ctrl-C stops `polyledger sql` on PostgreSQL too, the query cancelled on the server:
    "interrupted", exit 130, also when the command was started with SIGINT ignored."""
    Ledger(pg_url).close()
    marker = f"polyledger_sleeps_{uuid.uuid4().hex[:8]}"
    query = f"SELECT pg_sleep(600) AS {marker}"

    def running() -> bool:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            return bool(
                connection.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                    "AND pid != pg_backend_pid()",
                    (f"%{marker}%",),
                ).fetchone()
            )

    child = subprocess.Popen(
        cli_command("sql", "--ledger", pg_url, query),
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    assert ctrl_c(child, lambda: wait_for(running, 60)) == (
        130,
        "interrupted\n",
        "",
    )  # once the server runs it
    assert wait_for(lambda: not running(), 10)  # cancelled on the server, not left sleeping


def test_every_documented_query_gives_the_same_answer_on_postgres(busy_ledger, pg_url):  # noqa: F811
    # the ledger `tests/test_queries.py` checks every query on, where each has rows to give
    assert run_cli("export", "--ledger", busy_ledger / "ledger.db", "--to", pg_url).code == 0
    for name, query in documented().items():
        on_pg = run_cli("sql", "--format", "json", "--ledger", pg_url, "--", query)
        assert on_pg.code == 0, (name, on_pg.err)
        on_lite = run_cli("sql", "--format", "json", "--ledger", busy_ledger / "ledger.db", "--", query)
        assert on_lite.code == 0, (name, on_lite.err)
        assert json.loads(on_lite.out), name  # something to compare
        assert json.loads(on_pg.out) == json.loads(on_lite.out), name


def test_audit_and_report_agree_between_sqlite_and_postgres(demo_download, pg_url, tmp_path):
    from polyledger.checks.audit import audit

    assert run_cli("export", "--ledger", demo_download / "ledger.db", "--to", pg_url).code == 0
    with Ledger(pg_url, create=False) as pg, Ledger(demo_download / "ledger.db", create=False) as lite:
        assert audit(pg).to_dict() == audit(lite).to_dict()
    result = run_cli("report", "--ledger", pg_url, "--out", tmp_path / "report.html")
    assert result.code == 0, result.err
    assert_no_password((tmp_path / "report.html").read_text(encoding="utf-8"), pg_url)


# --- a full run ------------------------------------------------------------------------


def test_full_run_on_postgres_equals_the_truth(work, market, pg_url):
    from polars.testing import assert_frame_equal

    from polyledger.testing import StandInServer

    tickers = [listing.ticker for listing in LISTINGS] + [UNKNOWN]
    start, end = dt.date(2023, 1, 1), dt.date(2023, 12, 31)
    with StandInServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        write_universe(work / "universe.csv", tickers)
        planned = run_cli(
            "plan", "--universe", "universe.csv", "--from", start, "--to", end, "--ledger", pg_url
        )
        assert planned.code == 0, planned.err
        assert_no_password(planned.out, pg_url)
        result = run_cli(
            "run", "--base-url", server.url, "--workers", "8", "--rate", "2000", "--ledger", pg_url
        )
        assert result.code == 0, result.err + result.out
    assert not (work / "ledger.db").exists()
    with Ledger(pg_url, create=False) as ledger:
        states = {
            row.state: row.n for row in ledger.query("SELECT state, count(*) AS n FROM units GROUP BY state")
        }
        runs = ledger.query("SELECT outcome, adjusted FROM runs")
    assert set(states) <= {UnitState.DONE.value, UnitState.EMPTY_CONFIRMED.value}
    assert sum(states.values()) == len(tickers) * 12
    assert [tuple(r) for r in runs] == [("finished", True)]
    expected = truth_frame(market, tickers, start, end)
    assert_frame_equal(read_dataset(work / "data", "minute"), expected)
    audit = run_cli("audit", "--json", "--deep", "--ledger", pg_url)
    assert audit.code == 0, audit.err + audit.out
    assert json.loads(audit.out)["complete"] is True


def truth_frame(market, tickers, start, end):  # type: ignore[no-untyped-def]
    import polars as pl

    return pl.concat([truth(market, "minute", t, start, end) for t in tickers]).sort("ticker", "timestamp")


def test_a_run_survives_the_server_dropping_its_connections(work, market, pg_url, admin_url):
    """A restart, a failover or an idle timeout cuts every connection: the run reconnects and
    finishes, instead of stopping (or, for the heartbeat, letting its leases lapse)."""
    from polars.testing import assert_frame_equal

    from polyledger.testing import StandInServer

    tickers = [listing.ticker for listing in LISTINGS]
    start, end = dt.date(2023, 1, 1), dt.date(2023, 12, 31)
    write_universe(work / "universe.csv", tickers)
    assert (
        run_cli("plan", "--universe", "universe.csv", "--from", start, "--to", end, "--ledger", pg_url).code
        == 0
    )
    database = urlsplit(pg_url).path.lstrip("/")
    cut: list[int] = []  # connections the server dropped, at each cut
    with StandInServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        counted = server.stats._request

        counting = threading.Lock()

        def count_then_cut(*args):  # type: ignore[no-untyped-def]
            with counting:  # each total seen by its own request (two threads may count at once)
                counted(*args)
                total = server.stats.total
            if total in (10, 60):  # while the run's workers wait for these answers
                with psycopg.connect(admin_url, autocommit=True) as admin:
                    cut.append(
                        admin.execute(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()",
                            (database,),
                        ).fetchone()[0]
                    )

        server.stats._request = count_then_cut
        result = run_cli(
            "run", "--base-url", server.url, "--workers", "4", "--rate", "2000", "--ledger", pg_url
        )
    assert result.code == 0, result.err + result.out
    assert len(cut) == 2 and min(cut) >= 1  # the run's connections really were cut, twice
    with Ledger(pg_url, create=False) as ledger:
        states = dict(ledger.query("SELECT state, count(*) FROM units GROUP BY state"))
        attempts = ledger.query("SELECT max(attempts) AS most FROM units")[0].most
    assert set(states) <= {"done", "empty_confirmed"}
    assert attempts == 1  # nothing was claimed twice on the way
    expected = [truth(market, "minute", t, start, end) for t in tickers]
    import polars as pl

    assert_frame_equal(read_dataset(work / "data", "minute"), pl.concat(expected).sort("ticker", "timestamp"))


def test_a_claim_whose_answer_is_lost_takes_back_the_units_that_landed(pg_url, monkeypatch):
    """The connection drops after the claim's UPDATE committed, before its answer arrives:
    the repeated claim returns those units instead of leaving them leased to nobody."""
    from polyledger.ledger import pg

    with Ledger(pg_url) as ledger:
        plan(ledger, ["AAA"], "minute", dt.date(2024, 1, 1), dt.date(2024, 4, 30))
        execute, cut = pg.Cursor.execute, []

        def answer_lost(self, sql, params=None):  # type: ignore[no-untyped-def]
            result = execute(self, sql, params)
            if not cut and "lease_token = :token" in sql and sql.startswith("UPDATE"):
                cut.append(sql)
                self._cursor.connection.close()
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return result

        monkeypatch.setattr(pg.Cursor, "execute", answer_lost)
        claimed = ledger.claim("worker", 60, limit=2)
        assert cut and len(claimed) == 2
        held = ledger.query("SELECT lease_token, attempts FROM units WHERE state = 'running'")
        assert len(held) == 2 and {row.lease_token for row in held} == {claimed[0].lease_token}
        assert all(row.attempts == 1 for row in held)  # claimed once, not twice
        for unit in claimed:
            ledger.settle_empty(unit, True, AttemptRecord())
        assert ledger.heartbeat("worker", 60) == 0  # nothing left leased to this worker


def test_a_closed_ledger_does_not_reconnect(pg_url):
    ledger = Ledger(pg_url)
    plan(ledger, ["AAA"], "minute", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    ledger.heartbeat("w", 60)  # this thread now has a connection
    ledger.close()
    with pytest.raises(Exception, match="closed"):
        ledger.heartbeat("w", 60)
    assert ledger._connections == []


def test_sync_lock_on_postgresql_holds_and_a_dead_holder_is_taken_over(work, server, pg_url):
    """The sync lock is a row of the shared ledger, its heartbeat the server's clock: a live
    holder on another host keeps it (exit 4), a silent one loses it, in one line."""
    from polyledger.sync import EXIT_LOCKED
    from polyledger.sync_lock import LOCK_NAME

    planned = run_cli(
        "plan", "--dataset", "grouped_daily", "--from", "2024-02-27", "--to", "2024-02-28", "--ledger", pg_url
    )
    assert planned.code == 0, planned.err
    args = ["sync", "--now", "2024-02-29T22:30:00-05:00", "--base-url", server.url, "--ledger", pg_url]
    with Ledger(pg_url) as ledger:
        assert ledger.try_sync_lock(LOCK_NAME, "theirs", "other-host", 4242)
    held = run_cli(*args)
    assert held.code == EXIT_LOCKED and "another sync is running: host other-host pid 4242 since " in held.err
    assert_no_password(held.out + held.err, pg_url)
    with Ledger(pg_url) as ledger, ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE sync_lock SET beat_at = '2026-01-01T00:00:00.000Z'")
    taken = run_cli(*args)
    assert taken.code == 0, taken.out + taken.err
    assert (
        "took over the sync lock of host other-host pid 4242" in taken.out and "no heartbeat for" in taken.out
    )
    with Ledger(pg_url) as ledger:
        assert ledger.sync_lock_holder(LOCK_NAME) is None
        days = ledger.query("SELECT period FROM units WHERE dataset = 'grouped_daily' ORDER BY period")
    assert [row.period for row in days] == ["2024-02-27", "2024-02-28", "2024-02-29"]


def test_widening_never_widens_a_unit_a_worker_on_another_host_just_claimed(pg_url, monkeypatch):
    """A wider plan reads the clipped units, then widens each. On PostgreSQL nothing stops a
    worker on another host from claiming one in between (SQLite's plan holds the write lock):
    it fetches the range it was given, so the unit must not be widened under it and then
    settle `done` over days never asked. It is left clipped and counted busy (the next plan
    widens it)."""
    from polyledger.ledger import planning as planning_module

    with Ledger(pg_url) as planner, Ledger(pg_url) as worker:
        plan(planner, ["AAPL"], "minute", dt.date(2024, 3, 15), dt.date(2024, 3, 31))  # clipped: 03-15..03-31
        claimed: list = []
        real_bounds = planning_module.period_bounds

        def bounds_while_a_worker_claims(period):  # type: ignore[no-untyped-def]
            if not claimed:  # between the plan's read of the clipped units and its update
                claimed.extend(worker.claim("other-host", 60))
            return real_bounds(period)

        monkeypatch.setattr(planning_module, "period_bounds", bounds_while_a_worker_claims)
        result = plan(planner, ["AAPL"], "minute", dt.date(2024, 3, 1), dt.date(2024, 3, 31))
        (unit,) = claimed
        assert (unit.period_start, result.widened, result.busy) == (dt.date(2024, 3, 15), 0, 1)
        worker.settle_done(
            unit,
            StoredFile("minute/ticker=AAPL/year=2024/month=03/part.parquet", 10, "0" * 64, 100),
            True,
            AttemptRecord(),
        )
        (row,) = planner.query("SELECT state, period_start, period_end FROM units")
        assert (row.state, str(row.period_start)[:10]) == ("done", "2024-03-15")
        monkeypatch.undo()
        again = plan(planner, ["AAPL"], "minute", dt.date(2024, 3, 1), dt.date(2024, 3, 31))
        (row,) = planner.query("SELECT state, period_start FROM units")
        assert (again.widened, row.state, str(row.period_start)[:10]) == (1, "pending", "2024-03-01")


def test_a_run_that_beats_while_its_silence_is_acted_on_keeps_its_units(pg_url, monkeypatch):
    """A run seen silent is taken back only if it still shows that very heartbeat when its
    units are: on PostgreSQL a heartbeat can commit after the check read `runs` and before
    the take-back (SQLite's write lock keeps it out). Here it beats in between."""
    from polyledger.ledger.claims import Claims

    with Ledger(pg_url) as watcher, Ledger(pg_url) as victim:
        plan(watcher, ["AAPL"], "minute", dt.date(2024, 3, 1), dt.date(2024, 3, 31))
        victim.start_run("victim-run", workers=1, rate=1.0, adjusted=True, base_url="x", owner="victim")
        (unit,) = victim.claim("victim", 600)
        seen = {
            row.owner: str(row.last_seen_at) for row in watcher.query("SELECT owner, last_seen_at FROM runs")
        }
        real_take_back = Claims._take_back

        def take_back_after_a_beat(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            victim.clock = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
            victim.run_alive("victim-run", 0, 0)
            return real_take_back(self, *args, **kwargs)

        monkeypatch.setattr(Claims, "_take_back", take_back_after_a_beat)
        assert watcher.reclaim_silent(seen) == []
        (run,) = watcher.query("SELECT outcome, ended_at, last_seen_at FROM runs")
        assert str(run.last_seen_at) != seen["victim"] and run.ended_at is None
        assert victim.still_holds(unit)


def test_two_plans_widening_one_pending_unit_never_narrow_each_other(pg_url, monkeypatch):
    """Plan A reads a clipped unit (03-11..03-20) to widen it back to 03-04; plan B on another
    host widens it to 03-28 in between. A's update must not write the range it worked out
    from its stale read (B's days would be in no unit, a hole nobody is told of): it
    counts the unit busy, and the next plan widens it from what B left."""
    from polyledger.ledger import planning as planning_module

    with Ledger(pg_url) as a, Ledger(pg_url) as b:
        plan(a, ["AAPL"], "minute", dt.date(2024, 3, 11), dt.date(2024, 3, 20))  # clipped
        planned_by_b: list = []
        real_bounds = planning_module.period_bounds

        def bounds_while_b_plans(period):  # type: ignore[no-untyped-def]
            if not planned_by_b:  # between A's read of the clipped units and its update
                planned_by_b.append(None)  # B's own plan passes through here too
                planned_by_b[0] = plan(b, ["AAPL"], "minute", dt.date(2024, 3, 11), dt.date(2024, 3, 28))
            return real_bounds(period)

        monkeypatch.setattr(planning_module, "period_bounds", bounds_while_b_plans)
        first = plan(a, ["AAPL"], "minute", dt.date(2024, 3, 4), dt.date(2024, 3, 20))
        monkeypatch.undo()
        assert (planned_by_b[0].widened, first.widened, first.busy) == (1, 0, 1)
        (row,) = a.query("SELECT period_start, period_end FROM units")
        assert (str(row.period_start)[:10], str(row.period_end)[:10]) == ("2024-03-11", "2024-03-28")
        assert plan(a, ["AAPL"], "minute", dt.date(2024, 3, 4), dt.date(2024, 3, 20)).widened == 1
        (row,) = a.query("SELECT period_start, period_end FROM units")
        assert (str(row.period_start)[:10], str(row.period_end)[:10]) == ("2024-03-04", "2024-03-28")


def test_a_live_lease_is_never_expired_by_another_hosts_clock(pg_url):
    """Found by a review: a host whose clock ran more than a lease ahead took back a live
    run's freshly renewed units (leases written by one host's clock, judged by another's).
    On PostgreSQL every host's ledger clock is the server's (server_clock.py)."""
    from polyledger.ledger import Ledger, PlannedUnit
    from polyledger.ledger.records import utc_now
    from polyledger.ledger.server_clock import ServerClock

    def ahead() -> dt.datetime:
        return utc_now() + dt.timedelta(minutes=2)

    with Ledger(pg_url) as a, Ledger(pg_url) as b:
        assert isinstance(a.clock, ServerClock)  # the default on PostgreSQL
        b.clock = ServerClock(b._server_now, local=ahead)  # host B's clock two minutes fast
        a.add_units([PlannedUnit("minute", "ALFA", dt.date(2024, 2, 1), dt.date(2024, 2, 29))])
        a.start_run("run-a", workers=1, rate=1.0, adjusted=True, base_url="http://x", owner="host-a")
        (unit,) = a.claim("host-a", 60.0, 1)
        assert a.heartbeat("host-a", 60.0) == 1
        assert b.reclaim_expired() == []
        assert a.still_holds(unit)
        b.clock = ahead  # as before: host B's own clock
        assert b.reclaim_expired() != []  # the same lease, judged by B's clock, taken back


def test_a_rename_and_another_datasets_range_are_owed_on_postgres(pg_url):
    """`_owed` on PostgreSQL: META, new to the listings, of a security FB holds, gets its
    months over the range planned for the file, and the day bars planned from it their
    year, by the minute plan that records the change (`_known_securities`, `_planned_ranges`)."""
    from polyledger.listings import Listing

    fb = Listing("FB", dt.date(2012, 5, 18), None, "CO1")
    with Ledger(pg_url) as ledger:
        for dataset in ("minute", "day"):
            plan(ledger, [fb], dataset, dt.date(2022, 1, 1), dt.date(2022, 12, 31), source="/u.csv")
            ledger.remember_plan(dataset, "/u.csv", dt.date(2022, 1, 1), dt.date(2022, 12, 31))
        renamed = [
            Listing("FB", dt.date(2012, 5, 18), dt.date(2022, 6, 8), "CO1"),
            Listing("META", dt.date(2022, 6, 9), None, "CO1"),
        ]
        result = plan(ledger, renamed, "minute", dt.date(2023, 1, 1), dt.date(2023, 1, 31), source="/u.csv")
        elsewhere = [(other.dataset, other.added, other.widened) for other in result.elsewhere]
        assert (result.backfilled, elsewhere) == (7, [("day", 1, 0)])
        rows = ledger.query(
            "SELECT dataset, period FROM units WHERE ticker = 'META' ORDER BY dataset, period"
        )
        months = [f"2022-{month:02d}" for month in range(6, 13)] + ["2023-01"]
        assert [(row.dataset, row.period) for row in rows] == [("day", "2022")] + [
            ("minute", m) for m in months
        ]

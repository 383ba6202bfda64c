"""Copying a whole ledger between SQLite and PostgreSQL (either way): every table, ids,
states and leases as they are, read in batches (a million units stream through in chunks).

A copy is whole or is not there at all, even when the process is killed outright (kill -9,
power loss: no handler runs): a new SQLite ledger is written under a temporary name beside
it (`<name>.<hex>.partial`), fsynced and renamed into place at the end; an existing empty
SQLite ledger and a PostgreSQL ledger are filled in one transaction (the schema a new one
gets first holds no rows: the ledger stays empty until the copy commits).
"""

from __future__ import annotations

import os
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from polyledger.errors import InputError, counted
from polyledger.ledger.database import (
    Location,
    connect_postgres,
    connect_sqlite,
    describe,
    open_engine,
    parse_location,
)
from polyledger.ledger.models import (
    FlatFile,
    KeyRate,
    Listing,
    Planned,
    QualityFlag,
    Run,
    Setting,
    Split,
    UnattributedBars,
    Unit,
    UnitAttempt,
    UniverseBuild,
    Unwidened,
)
from polyledger.ledger.records import iso, utc_now

# parents before children (unit_attempts refers to units); `sync_lock` and `key_members`
# are no data (who runs now): never copied
TABLES = (
    Unit,
    UnitAttempt,
    Run,
    Setting,
    Split,
    QualityFlag,
    Listing,
    UnattributedBars,
    Planned,
    UniverseBuild,
    KeyRate,
    FlatFile,
    Unwidened,
)
BATCH_ROWS = 50_000
# the names a SQLite ledger a copy makes may have (or none): never a data file's (.csv ...)
LEDGER_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class TransferResult:
    source: str
    target: str
    rows: dict[str, int]  # table -> rows copied


def _columns(model) -> list[str]:  # type: ignore[no-untyped-def]
    return [column.name for column in model.__table__.columns]


def _order(model) -> str:  # type: ignore[no-untyped-def]
    return ", ".join(column.name for column in model.__table__.primary_key.columns)


def _connect(location: Location):  # type: ignore[no-untyped-def]
    return connect_sqlite(location) if not isinstance(location, str) else connect_postgres(location)


def live_leases(engine: Engine) -> int:
    """Units a run holds right now (running under a lease that has not expired), by the
    clock leases are written in: on PostgreSQL the server's, as every host's decisions
    are (this host's own clock may be minutes off)."""
    with engine.connect() as connection:
        now = utc_now()
        if engine.dialect.name == "postgresql":
            now = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        return connection.execute(
            text("SELECT count(*) FROM units WHERE state = 'running' AND lease_expires_at >= :now"),
            {"now": iso(now)},
        ).scalar_one()


def _occupied(connection) -> list[str]:  # type: ignore[no-untyped-def]
    """The tables holding rows (a sqlite3 or a psycopg connection)."""
    return [
        model.__tablename__
        for model in TABLES
        if connection.execute(f"SELECT 1 FROM {model.__tablename__} LIMIT 1").fetchone()
    ]


def _refuse_occupied(connection, target: Location) -> None:  # type: ignore[no-untyped-def]
    occupied = _occupied(connection)
    if occupied:
        raise InputError(
            f"the target ledger {describe(target)} is not empty (it has {', '.join(occupied)}): "
            "copy into a new or empty ledger"
        )


def check_ledger_name(location: Location) -> None:
    """A SQLite file a copy makes or reads is named as a ledger is (.db, .sqlite, .sqlite3
    or no suffix), so `export --to units.csv` never writes a database under a data file's
    name; a file that is a SQLite database already is taken whatever its name."""
    if isinstance(location, str) or location.suffix.lower() in ("", *LEDGER_SUFFIXES):
        return
    if _is_sqlite_file(location):
        return
    as_csv = shlex.quote(str(location.with_suffix(".csv")))
    raise InputError(
        f"{location} is not a ledger's name (a SQLite ledger's ends .db, .sqlite or .sqlite3): export "
        f'and import copy a whole ledger; for a table as CSV: polyledger sql "SELECT * FROM units" '
        f"--format csv > {as_csv}"
    )


def _is_sqlite_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


class _Snapshot:
    """The source ledger read as of one moment: every table in one read-only transaction
    (REPEATABLE READ on PostgreSQL; on SQLite one read transaction, which WAL keeps at its
    first read), so a `plan` or `retry` writing meanwhile never leaves the copy with
    attempts of units it lacks."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.connection = _connect(location)
        if isinstance(location, str):
            self.connection.autocommit = False
            self.connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            self.connection.execute("BEGIN")

    def batches(self, model, batch: int):  # type: ignore[no-untyped-def]
        """The table's rows in primary-key order, `batch` at a time, from a server-side
        cursor (PostgreSQL) or a stepping sqlite3 cursor: never the whole table in memory."""
        table, columns = model.__tablename__, _columns(model)
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_order(model)}"
        if isinstance(self.location, str):
            with self.connection.cursor(name=f"polyledger_export_{table}") as cursor:
                cursor.itersize = batch
                cursor.execute(sql)
                while rows := cursor.fetchmany(batch):
                    yield rows
        else:
            cursor = self.connection.execute(sql)
            while rows := cursor.fetchmany(batch):
                yield rows

    def close(self) -> None:
        try:
            self.connection.rollback()  # read only: nothing to keep
        finally:
            self.connection.close()


def copy_ledger(source: Location, target: Location, *, batch: int = BATCH_ROWS) -> TransferResult:
    """Copy every table of the ledger at `source` into `target` (a new or empty ledger,
    migrated first), all or nothing. Refuses while a run holds live leases on the source."""
    source, target = parse_location(source), parse_location(target)
    for location in (source, target):
        check_ledger_name(location)
    if describe(source) == describe(target):
        raise InputError("source and target are the same ledger")
    source_engine = open_engine(source, create=False)
    try:
        live = live_leases(source_engine)
        if live:
            raise InputError(
                f"a run holds {counted(live, 'unit')} of {describe(source)} right now: copy the ledger "
                "after it ends"
            )
    finally:
        source_engine.dispose()
    snapshot = _Snapshot(source)
    try:
        if isinstance(target, str):
            copied = _copy_to_postgres(snapshot, target, batch)
        elif target.exists():
            copied = _copy_to_existing_sqlite(snapshot, target, batch)
        else:
            copied = _copy_to_new_sqlite(snapshot, target, batch)
    finally:
        snapshot.close()
    return TransferResult(describe(source), describe(target), copied)


def _copy_to_postgres(source: _Snapshot, target: str, batch: int) -> dict[str, int]:
    """COPY every table in one transaction: a copy killed on the way is rolled back by the
    server (PostgreSQL holds a transaction of millions of rows without trouble)."""
    open_engine(target, create=True).dispose()  # migrated: the tables, no rows
    connection = connect_postgres(target)
    try:
        with connection.transaction():
            _refuse_occupied(connection, target)
            copied = {
                model.__tablename__: _copy_table_to_postgres(connection, model, source.batches(model, batch))
                for model in TABLES
            }
            _fix_sequences(connection)
    finally:
        connection.close()
    return copied


def _copy_to_existing_sqlite(source: _Snapshot, target: Path, batch: int) -> dict[str, int]:
    """An empty ledger (or an empty file, made one) filled in one transaction: killed on the
    way, SQLite's journal takes it back to empty when the file is next opened."""
    open_engine(target, create=True).dispose()  # another program's database is refused here
    connection = connect_sqlite(target)
    try:
        return _fill_sqlite(connection, source, target, batch)
    finally:
        connection.close()


def _copy_to_new_sqlite(source: _Snapshot, target: Path, batch: int) -> dict[str, int]:
    """Written under a temporary name beside the target, fsynced, renamed into place: until
    the rename there is no ledger at `target`, after it the whole copy. Killed outright, the
    copy leaves only the temporary (`<name>.<hex>.partial`, never taken for a ledger)."""
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        open_engine(partial, create=True).dispose()  # the newest schema
        connection = connect_sqlite(partial)
        try:
            # a temporary needs no journal: a failed copy is deleted, never rolled back
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            copied = _fill_sqlite(connection, source, target, batch)
            connection.execute("PRAGMA journal_mode=WAL")  # as every ledger is
        finally:
            connection.close()
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        if target.exists():  # made while the copy ran: never replaced
            raise InputError(f"{target} was made while the copy ran: copy into a new or empty ledger")
        os.replace(partial, target)
    except BaseException:
        for leftover in (partial, *(partial.with_name(partial.name + end) for end in _SIDE_FILES)):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        raise
    _fsync_folder(target.parent)
    return copied


_SIDE_FILES = ("-journal", "-wal", "-shm")


def _fill_sqlite(connection, source: _Snapshot, target: Path, batch: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every table in one transaction, taken before the target is found empty."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        _refuse_occupied(connection, target)
        copied = {}
        for model in TABLES:
            table, columns = model.__tablename__, _columns(model)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            count = 0
            for rows in source.batches(model, batch):
                connection.executemany(sql, [tuple(row) for row in rows])
                count += len(rows)
            copied[table] = count
    except BaseException:
        try:
            connection.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the first error is the one to tell
            pass
        raise
    connection.execute("COMMIT")
    return copied


def _copy_table_to_postgres(connection, model, batches) -> int:  # type: ignore[no-untyped-def]
    table, columns = model.__tablename__, _columns(model)
    booleans = {i for i, column in enumerate(model.__table__.columns) if column.type.python_type is bool}
    count = 0
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for rows in batches:
                for row in rows:
                    if booleans:  # SQLite keeps booleans as 0/1
                        row = tuple(
                            bool(v) if i in booleans and v is not None else v for i, v in enumerate(row)
                        )
                    copy.write_row(row)
                count += len(rows)
    return count


def _fix_sequences(connection) -> None:  # type: ignore[no-untyped-def]
    """Explicit ids were inserted: the next generated id must follow the largest."""
    for model in TABLES:
        table = model.__tablename__
        key = model.__table__.primary_key.columns
        if len(key) == 1 and key[0].name == "id" and key[0].type.python_type is int:
            connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders for this."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def schema_revision(location: Location) -> tuple[str | None, str]:
    """(the ledger's schema revision before, after migrating it to the newest). An empty
    PostgreSQL database gets a new ledger; a missing SQLite file is an error (a typo)."""
    from polyledger.ledger.database import current_revision, migrate

    location = parse_location(location)
    engine = open_engine(location, create=isinstance(location, str), migrate_schema=False)
    try:
        before = current_revision(engine)
        after = migrate(engine)
    finally:
        engine.dispose()
    return before, after


__all__ = ["TABLES", "TransferResult", "check_ledger_name", "copy_ledger", "live_leases", "schema_revision"]

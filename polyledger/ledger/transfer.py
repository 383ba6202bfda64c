"""Copying a whole ledger between SQLite and PostgreSQL (either way): every table, ids,
states and leases as they are, in batches (a million units stream through in chunks)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

from polyledger.errors import InputError
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
)
BATCH_ROWS = 50_000


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
    """Units a run holds right now (running under a lease that has not expired)."""
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM units WHERE state = 'running' AND lease_expires_at >= :now"),
            {"now": iso(utc_now())},
        ).scalar_one()


def _occupied(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            model.__tablename__
            for model in TABLES
            if connection.execute(text(f"SELECT 1 FROM {model.__tablename__} LIMIT 1")).first()
        ]


def _read_batches(location: Location, model, batch: int):  # type: ignore[no-untyped-def]
    """The table's rows in primary-key order, `batch` at a time, from a server-side cursor
    (PostgreSQL) or a stepping sqlite3 cursor: never the whole table in memory."""
    table, columns = model.__tablename__, _columns(model)
    sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_order(model)}"
    connection = _connect(location)
    try:
        if isinstance(location, str):
            connection.autocommit = False
            with connection.cursor(name=f"polyledger_export_{table}") as cursor:
                cursor.itersize = batch
                cursor.execute(sql)
                while rows := cursor.fetchmany(batch):
                    yield rows
            connection.rollback()
        else:
            cursor = connection.execute(sql)
            while rows := cursor.fetchmany(batch):
                yield rows
    finally:
        connection.close()


def copy_ledger(source: Location, target: Location, *, batch: int = BATCH_ROWS) -> TransferResult:
    """Copy every table of the ledger at `source` into `target` (a new or empty ledger,
    migrated first). Refuses while a run holds live leases on the source."""
    source, target = parse_location(source), parse_location(target)
    if describe(source) == describe(target):
        raise InputError("source and target are the same ledger")
    source_engine = open_engine(source, create=False)
    try:
        live = live_leases(source_engine)
        if live:
            raise InputError(
                f"a run holds {live} units of {describe(source)} right now: copy the ledger after it ends"
            )
        target_engine = open_engine(target, create=True)
        try:
            occupied = _occupied(target_engine)
        finally:
            target_engine.dispose()
    finally:
        source_engine.dispose()
    if occupied:
        raise InputError(
            f"the target ledger {describe(target)} is not empty (it has {', '.join(occupied)}): "
            "copy into a new or empty ledger"
        )
    connection = _connect(target)
    copied: dict[str, int] = {}
    try:
        for model in TABLES:
            copied[model.__tablename__] = _write_table(
                connection, target, model, _read_batches(source, model, batch)
            )
        if isinstance(target, str):
            _fix_sequences(connection)
    except BaseException:
        connection.close()
        _empty(target)  # a half copy must not look like a ledger: it is empty again
        raise
    connection.close()
    return TransferResult(describe(source), describe(target), copied)


def _write_table(connection, target: Location, model, batches) -> int:  # type: ignore[no-untyped-def]
    table, columns = model.__tablename__, _columns(model)
    count = 0
    if isinstance(target, str):
        booleans = {i for i, column in enumerate(model.__table__.columns) if column.type.python_type is bool}
        with connection.transaction():
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for rows in batches:
                        for row in rows:
                            if booleans:  # SQLite keeps booleans as 0/1
                                row = tuple(
                                    bool(v) if i in booleans and v is not None else v
                                    for i, v in enumerate(row)
                                )
                            copy.write_row(row)
                        count += len(rows)
        return count
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    for rows in batches:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(sql, [tuple(row) for row in rows])
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
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


def _empty(target: Location) -> None:
    try:
        connection = _connect(target)
    except Exception:
        return
    try:
        for model in reversed(TABLES):
            connection.execute(f"DELETE FROM {model.__tablename__}")
    except Exception:
        pass
    finally:
        connection.close()


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


__all__ = ["TABLES", "TransferResult", "copy_ledger", "live_leases", "schema_revision"]

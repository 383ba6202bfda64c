"""Ad-hoc SQL on a ledger that it cannot change (`polyledger sql`), on either backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from polyledger.errors import InputError
from polyledger.ledger.database import connect_postgres, is_postgres, open_read_only, parse_location
from polyledger.secrets import redact

# how many SQLite virtual-machine steps a query takes between two calls of the progress
# handler: a few microseconds, so Ctrl-C is acted on at once (costs nothing measurable)
PROGRESS_STEPS = 1_000


def run_read_only(location: str, sql: str) -> tuple[list[str], list]:
    """(column names, rows) of one read-only query on the ledger at `location` (a SQLite
    path or a `postgresql://` URL). A write, or any SQL error, raises InputError; a
    KeyboardInterrupt (Ctrl-C) stops the query on either backend and is raised again."""
    if is_postgres(location):
        return _postgres(location, sql)
    return _sqlite(Path(location), sql)


def _sqlite(path: Path, query: str) -> tuple[list[str], list]:
    connection = open_read_only(path)
    # SQLite runs a query in one C call, and Python acts on a signal (Ctrl-C) only when it
    # runs Python code: the progress handler gives it that chance. An exception the signal
    # handler raises there is swallowed by sqlite3, which aborts the query as "interrupted"
    connection.set_progress_handler(_carry_on, PROGRESS_STEPS)
    try:
        cursor = connection.execute(query)
        columns = [c[0] for c in cursor.description or []]
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from None
        # the authorizer answers every write with "not authorized"
        read_only = " (the ledger is read-only here)" if "not authorized" in str(exc) else ""
        raise InputError(f"SQL error: {exc}{read_only}") from None
    finally:
        connection.close()
    return columns, rows


def _carry_on() -> int:
    return 0  # never stops the query itself; a signal handler running meanwhile may


def _interrupted(exc: sqlite3.Error) -> bool:
    """The query was aborted from the progress handler (no other handler can abort it)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == sqlite3.SQLITE_INTERRUPT if code is not None else str(exc) == "interrupted"


def _postgres(url: str, query: str) -> tuple[list[str], list]:
    """One statement in a READ ONLY transaction (the session defaults to read-only too), sent
    alone through the extended protocol so a `; COMMIT; DELETE ...` cannot follow it; the
    transaction's snapshot is taken first, so it cannot be switched to read-write. Ctrl-C
    (KeyboardInterrupt) while psycopg waits for the server cancels the query on the server
    (psycopg does) and is raised again."""
    import psycopg

    connection = connect_postgres(parse_location(url), options="-c default_transaction_read_only=on")
    try:
        connection.autocommit = False
        connection.read_only = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.execute(query.strip().rstrip(";"), binary=True)
            columns = [c.name for c in cursor.description or []]
            rows = cursor.fetchall() if cursor.description else []
        connection.rollback()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        read_only = " (the ledger is read-only here)" if "read-only transaction" in detail else ""
        raise InputError(f"SQL error: {redact(detail)}{read_only}") from None
    finally:
        connection.close()
    return columns, rows

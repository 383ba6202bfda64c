"""Ad-hoc SQL on a ledger that it cannot change (`polyledger sql`), on either backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from polyledger.errors import InputError
from polyledger.ledger.database import connect_postgres, is_postgres, open_read_only, parse_location
from polyledger.secrets import redact


def run_read_only(location: str, sql: str) -> tuple[list[str], list]:
    """(column names, rows) of one read-only query on the ledger at `location` (a SQLite
    path or a `postgresql://` URL). A write, or any SQL error, raises InputError."""
    if is_postgres(location):
        return _postgres(location, sql)
    return _sqlite(Path(location), sql)


def _sqlite(path: Path, query: str) -> tuple[list[str], list]:
    connection = open_read_only(path)
    try:
        cursor = connection.execute(query)
        columns = [c[0] for c in cursor.description or []]
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        # the authorizer answers every write with "not authorized"
        read_only = " (the ledger is read-only here)" if "not authorized" in str(exc) else ""
        raise InputError(f"SQL error: {exc}{read_only}") from None
    finally:
        connection.close()
    return columns, rows


def _postgres(url: str, query: str) -> tuple[list[str], list]:
    """One statement in a READ ONLY transaction (the session defaults to read-only too), sent
    alone through the extended protocol so a `; COMMIT; DELETE ...` cannot follow it; the
    transaction's snapshot is taken first, so it cannot be switched to read-write."""
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

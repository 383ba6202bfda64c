"""The ledger's connections: one per thread for writes (sqlite3, or psycopg through
`polyledger.ledger.pg`), the engine for reads and migrations, write transactions, and
reconnecting when a PostgreSQL server drops a connection."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from polyledger.errors import InputError, LedgerError
from polyledger.ledger import pg
from polyledger.ledger.database import (
    Location,
    connect_postgres,
    connect_sqlite,
    describe,
    open_engine,
    parse_location,
)
from polyledger.ledger.records import Clock, utc_now
from polyledger.ledger.server_clock import ServerClock

if TYPE_CHECKING:
    from polyledger.ledger.ledger import Ledger

log = logging.getLogger(__name__)


# seconds between attempts to reach a PostgreSQL server that dropped a connection: about
# half a minute, enough for a restart or a failover, before the run stops with the error
RECONNECT_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def _reconnecting(method: Callable) -> Callable:
    """PostgreSQL: when the server dropped this thread's connection (a restart, a failover,
    an idle timeout, `pg_terminate_backend`), open a new one and make the call again.

    Safe to repeat: a transaction cut off by a dropped connection is rolled back by the
    server, unless the drop fell between COMMIT and its answer. Then a settle finds its unit
    already moved and raises LeaseLost (as for any lost lease; the file is written and the
    unit settled), a claim, repeated with the same lease token, takes back the units that
    had landed, and the sync lock, its INSERT or takeover repeated, finds its own token in
    the row and holds it. Arguments are never iterators (a repeat would find them used up). After
    about half a minute without the server: LedgerError."""

    @functools.wraps(method)
    def call(self: LedgerConnection, *args: object, **kwargs: object) -> object:
        if not self.postgres:
            return method(self, *args, **kwargs)
        failure: BaseException | None = None
        for delay in RECONNECT_DELAYS:
            if failure is not None:
                time.sleep(delay)
            self._local.retrying = failure is not None
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - only a dropped connection is retried
                dropped = self._forget_broken_connection() or getattr(exc, "connection_invalidated", False)
                if not (dropped or (failure is not None and _unreachable(exc))):
                    raise
                failure = failure or exc
            finally:
                self._local.retrying = False
        raise LedgerError(
            f"the ledger's server stopped answering (retried for {sum(RECONNECT_DELAYS):.0f} s): {failure}"
        ) from failure

    return call


def _unreachable(exc: BaseException) -> bool:
    """The server could not be reached again (while reconnecting)."""
    return isinstance(exc, InputError) or type(exc).__name__ == "OperationalError"


class LedgerConnection:
    """Where the ledger is and how to reach it, per thread; the base of `Ledger`."""

    def __init__(self, path: Location, *, create: bool = True, clock: Clock = utc_now) -> None:
        self.location = parse_location(path)
        self.postgres = isinstance(self.location, str)
        self.dialect = "postgresql" if self.postgres else "sqlite"
        # the SQLite file; for PostgreSQL None (`name` says where the ledger is)
        self.path: Path | None = None if self.postgres else Path(self.location)
        self.name = describe(self.location)
        self.engine: Engine = open_engine(self.location, create=create)
        # hosts sharing a server agree on its time, never on their own (leases: server_clock.py)
        self.clock = ServerClock(self._server_now) if self.postgres and clock is utc_now else clock
        self._local = threading.local()
        self._connections: list = []
        self._connections_lock = threading.Lock()
        self._closed = False
        # `+dataset` keeps SQLite's planner on the pending index; PostgreSQL has no unary + on text
        self._plus = "" if self.postgres else "+"

    def close(self) -> None:
        self._closed = True  # a call after this must not open a connection nobody closes
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise LedgerError(f"the ledger {self.name} is closed")
            if self.postgres:
                connection = connect_postgres(self.location)  # type: ignore[arg-type]
            else:
                connection = connect_sqlite(self.path)  # type: ignore[arg-type]
                connection.row_factory = sqlite3.Row
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _forget_broken_connection(self) -> bool:
        """Drop this thread's PostgreSQL connection if the server cut it off; True if it did
        (the next statement then opens a new one)."""
        connection = getattr(self._local, "connection", None)
        if self._closed or connection is None:
            return False
        if not (getattr(connection, "broken", False) or connection.closed):
            return False
        self._local.connection = None
        with self._connections_lock:
            if connection in self._connections:
                self._connections.remove(connection)
        try:
            connection.close()
        except Exception:  # noqa: BLE001, S110 - it is gone either way
            pass
        log.warning("the ledger's server dropped a connection; reconnecting")
        return True

    def _statement(self) -> sqlite3.Cursor:
        """A cursor for one write statement, its own transaction: an UPDATE takes the write
        lock before it reads, so it waits on the busy timeout like BEGIN IMMEDIATE, and
        costs one round trip instead of three."""
        if self.postgres:
            return pg.Cursor(self._connection())  # type: ignore[return-value]
        return self._connection().cursor()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front (a deferred
        BEGIN that reads, then writes, can fail with "database is locked")."""
        cursor = self._statement()
        cursor.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def _server_now(self) -> dt.datetime:
        return self.query("SELECT clock_timestamp() AS now")[0].now

    def query(self, sql: str, params: dict | None = None) -> list:
        """Rows of a read query (named parameters), for audits and tests."""
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params or {}).all())

    def checkpoint(self) -> None:
        """SQLite: fold the write-ahead log into the file, so the file alone is the whole ledger."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

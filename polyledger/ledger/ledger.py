"""The ledger: planning units, claiming them under a lease, settling them, and reading it back.

Hot paths are single SQL statements (never ORM objects): a claim is one UPDATE over a
LIMIT-ed subquery that RETURNs the claimed rows, so two workers can never get the same
unit, and a settle only lands while the worker still holds the lease.

Writes go straight to one sqlite3 connection per thread: through SQLAlchemy `text()`,
compiling and pooling cost three times the SQL itself (claim + complete at ~1,100
units/s with 8 threads; ~5,000 raw). Reads and migrations go through the engine.

On PostgreSQL (a `postgresql://` location) the same SQL runs on one psycopg connection per
thread (`polyledger.ledger.pg` converts its parameters), and a claim's subquery locks the
rows it picks with FOR UPDATE SKIP LOCKED: many hosts x many workers never wait on each
other's claims nor get the same unit.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, insert, text

from polyledger.errors import InputError, LeaseLost, LedgerError
from polyledger.ledger import pg
from polyledger.ledger.database import (
    Location,
    connect_postgres,
    connect_sqlite,
    describe,
    open_engine,
    parse_location,
)
from polyledger.ledger.models import Run
from polyledger.ledger.states import UnitState, allowed_sources
from polyledger.periods import period_bounds

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """Fixed-width UTC timestamps, so string comparison in SQL is time comparison."""
    # isoformat is ~8x cheaper than strftime, and this runs on every claim and settle
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def in_list(column: str, values: Iterable[object], prefix: str) -> tuple[str, dict]:
    """`column IN (:p0, :p1, ...)` and its parameters, for a list of values."""
    params = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return f"{column} IN ({', '.join(':' + key for key in params)})", params


def new_owner_id() -> str:
    """Who holds a lease: host, process and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class PlannedUnit:
    dataset: str
    ticker: str
    period_start: dt.date
    period_end: dt.date
    period_name: str | None = None  # set for units that are not a calendar period ("all")

    @property
    def period(self) -> str:
        """The calendar period that identifies the unit (a plan may clip its ends)."""
        if self.period_name is not None:
            return self.period_name
        if self.period_start.year != self.period_end.year:
            raise ValueError("a unit never spans two years")
        # integer formatting: strftime here was a third of planning's time
        if self.period_start.month == self.period_end.month and self.dataset != "day":
            return f"{self.period_start.year:04d}-{self.period_start.month:02d}"
        return f"{self.period_start.year:04d}"


@dataclass(frozen=True)
class ClaimedUnit:
    id: int
    dataset: str
    ticker: str
    period_start: dt.date
    period_end: dt.date
    attempts: int
    lease_token: str
    claimed_at: str


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt did, stored in unit_attempts when the unit settles."""

    requests: int = 0
    bytes: int = 0
    bars: int = 0
    http_status: int | None = None
    request_id: str | None = None
    error_class: str | None = None
    error: str | None = None
    duplicates: int = 0  # bars that arrived twice with one timestamp (the first is kept)


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the data folder, forward slashes
    rows: int
    checksum: str
    bytes: int


_RUNS = Run.__table__


@dataclass(frozen=True)
class FetchedUnit:
    """A unit whose answer is complete: its file, or None when it has no bars."""

    unit: ClaimedUnit
    attempt: AttemptRecord
    stored: StoredFile | None


@functools.lru_cache(maxsize=256)
def _move_sql(
    target: UnitState,
    sources: frozenset[UnitState],
    where: str,
    sets: str,
    returning: str,
    by_id: bool,
    postgres: bool = False,
) -> str:
    """The UPDATE behind `Ledger._move`, built once per shape (claims and settles repeat a
    handful of shapes thousands of times a second)."""
    source_values = allowed_sources(target, sources)
    state_column = "(state || '')" if by_id and not postgres else "state"
    # states are literals (our own enum values): SQLite uses a partial index only when
    # the query names its state as a constant, and `IN (one)` as `= one`
    literals = ", ".join(f"'{value}'" for value in source_values)
    state_test = (
        f"{state_column} = {literals}" if len(source_values) == 1 else f"{state_column} IN ({literals})"
    )
    return (
        f"UPDATE units SET state = :_target, updated_at = :_now{', ' + sets if sets else ''} "
        f"WHERE ({where}) AND {state_test}{' RETURNING ' + returning if returning else ''}"
    )


def _fetched_change(item: FetchedUnit, adjusted: bool | None) -> tuple[UnitState, str, dict]:
    """The state and columns a complete answer sets (for `Ledger._settle`)."""
    fetched = "adjusted = :adjusted, fetched_at = :_now, last_error = NULL, error_class = NULL"
    if item.stored is None:
        return (
            UnitState.EMPTY_CONFIRMED,
            f"rows = 0, file_path = NULL, checksum = NULL, bytes = NULL, {fetched}",
            {"adjusted": adjusted},
        )
    stored = item.stored
    return (
        UnitState.DONE,
        f"rows = :rows, file_path = :file_path, checksum = :checksum, bytes = :bytes, {fetched}",
        {
            "rows": stored.rows,
            "file_path": stored.path,
            "checksum": stored.checksum,
            "bytes": stored.bytes,
            "adjusted": adjusted,
        },
    )


_LEASE_EXPIRED = "lease_expired"
_LEASE_EXPIRED_TEXT = "lease expired: its worker stopped"

_INSERT_ATTEMPT = (
    "INSERT INTO unit_attempts (unit_id, run_id, started_at, ended_at, outcome, error_class, error, "
    "http_status, request_id, requests, bytes, bars, duplicates) VALUES (:unit_id, :run_id, :started_at, "
    ":ended_at, :outcome, :error_class, :error, :http_status, :request_id, :requests, :bytes, :bars, "
    ":duplicates)"
)


# seconds between attempts to reach a PostgreSQL server that dropped a connection: about
# half a minute, enough for a restart or a failover, before the run stops with the error
RECONNECT_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def _reconnecting(method: Callable) -> Callable:
    """PostgreSQL: when the server dropped this thread's connection (a restart, a failover,
    an idle timeout, `pg_terminate_backend`), open a new one and make the call again.

    Safe to repeat: a transaction cut off by a dropped connection is rolled back by the
    server, unless the drop fell between COMMIT and its answer. Then a settle finds its unit
    already moved and raises LeaseLost (as for any lost lease; the file is written and the
    unit settled), and a claim, repeated with the same lease token, takes back the units
    that had landed. Arguments are never iterators (a repeat would find them used up). After
    about half a minute without the server: LedgerError."""

    @functools.wraps(method)
    def call(self: Ledger, *args: object, **kwargs: object) -> object:
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


class Ledger:
    """A ledger: a SQLite file or a PostgreSQL database (`postgresql://user:pw@host/db`).
    Thread-safe: every thread has its own connection."""

    def __init__(self, path: Location, *, create: bool = True, clock: Clock = utc_now) -> None:
        self.location = parse_location(path)
        self.postgres = isinstance(self.location, str)
        self.dialect = "postgresql" if self.postgres else "sqlite"
        # the SQLite file; for PostgreSQL None (`name` says where the ledger is)
        self.path: Path | None = None if self.postgres else Path(self.location)
        self.name = describe(self.location)
        self.clock = clock
        self.engine: Engine = open_engine(self.location, create=create)
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

    # --- planning -------------------------------------------------------------------

    def add_units(self, units: Iterable[PlannedUnit], batch_size: int = 20_000) -> int:
        """Insert the units that are not in the ledger yet; existing ones keep their state.
        Streams in batches, each its own short write transaction, so a huge plan neither
        holds the ledger's lock for long nor all its units in memory. Returns how many
        were added."""
        now = iso(self.clock())
        sql = (
            "INSERT INTO units (dataset, ticker, period, period_start, period_end, state, attempts, "
            "requests, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?) "
            "ON CONFLICT (dataset, ticker, period) DO NOTHING"
        )
        added = 0
        batch: list[tuple] = []

        def flush() -> int:
            with self._write() as cursor:
                cursor.executemany(sql, batch)
                return cursor.rowcount

        for unit in units:
            batch.append(
                (
                    unit.dataset,
                    unit.ticker,
                    unit.period,
                    unit.period_start.isoformat(),
                    unit.period_end.isoformat(),
                    now,
                    now,
                )
            )
            if len(batch) >= batch_size:
                added += flush()
                batch = []
        if batch:
            added += flush()
        return added

    def widen_clipped(
        self, dataset: str, tickers: Iterable[str], start: dt.date, end: dt.date
    ) -> tuple[int, int]:
        return self._widen_clipped(dataset, frozenset(tickers), start, end)

    @_reconnecting
    def _widen_clipped(
        self, dataset: str, tickers: frozenset[str], start: dt.date, end: dt.date
    ) -> tuple[int, int]:
        """Units an earlier plan clipped (part of a month or year) that a plan of `tickers` x
        [start, end] covers further are widened, and, if settled, queued again so the
        period is fetched whole (its file is then replaced by a superset of itself).
        Returns (widened, busy): busy units are being fetched right now and left alone."""
        with self._write() as cursor:
            month_end = (
                "to_char(date_trunc('month', period_start::date) + interval '1 month - 1 day', 'YYYY-MM-DD')"
                if self.postgres
                else "date(period_start, 'start of month', '+1 month', '-1 day')"
            )
            clipped = cursor.execute(
                (
                    "SELECT id, ticker, period, period_start, period_end, state FROM units "
                    "WHERE dataset = :d AND ("
                    "(dataset = 'day' AND (period_start != period || '-01-01' "
                    "OR period_end != period || '-12-31')) "
                    "OR (dataset != 'day' AND (period_start != period || '-01' "
                    f"OR period_end != {month_end})))"
                ),
                {"d": dataset},
            ).fetchall()
            widened = busy = 0
            for row in clipped:
                if row["ticker"] not in tickers:
                    continue
                first, last = period_bounds(row["period"])
                if start > last or end < first:
                    continue
                new_start = min(row["period_start"], max(start, first).isoformat())
                new_end = max(row["period_end"], min(end, last).isoformat())
                if (new_start, new_end) == (row["period_start"], row["period_end"]):
                    continue
                if row["state"] == UnitState.RUNNING.value:
                    busy += 1
                    continue
                params = {"id": row["id"], "start": new_start, "end": new_end}
                widen = "period_start = :start, period_end = :end"
                if row["state"] == UnitState.PENDING.value:
                    cursor.execute(f"UPDATE units SET {widen} WHERE id = :id", params)
                else:
                    # queued again with a fresh budget, as `retry` does: a unit that had used
                    # its attempts must not fail for good on its first transient error
                    self._move(
                        cursor,
                        UnitState.PENDING,
                        {UnitState(row["state"])},
                        "id = :id",
                        params,
                        sets=f"{widen}, attempts = 0",
                    )
                widened += 1
        return widened, busy

    # --- state changes: every one goes through _move --------------------------------

    def _move(
        self,
        cursor: sqlite3.Cursor,
        target: UnitState,
        sources: set[UnitState],
        where: str,
        params: dict,
        sets: str = "",
        returning: str = "",
        by_id: bool = False,
    ) -> sqlite3.Cursor:
        """UPDATE units to `target` where `where` holds and the state is one of `sources`;
        raises IllegalTransition if any source may not move to target.

        `by_id`: `where` already picks rows by id, so keep the planner off the state index
        (`state || ''`), which would otherwise scan every row in that state."""
        sql = _move_sql(target, frozenset(sources), where, sets, returning, by_id, self.postgres)
        params = dict(params, _target=target.value, _now=iso(self.clock()))
        return cursor.execute(sql, params)

    def _dataset_filter(self, datasets: Sequence[str] | None) -> tuple[str, dict]:
        """` AND dataset IN (...)` for claims and counts of pending units; `+dataset` (SQLite)
        filters the rows found through the pending index instead of searching by dataset."""
        if not datasets:
            return "", {}
        test, params = in_list(f"{self._plus}dataset", datasets, "_ds")
        return f" AND {test}", params

    def claim(
        self,
        owner: str,
        lease_seconds: float,
        limit: int = 1,
        datasets: Sequence[str] | None = None,
    ) -> list[ClaimedUnit]:
        """Atomically take up to `limit` pending units under a lease held by `owner`:
        least-tried first (a unit that keeps failing waits behind the others), then id order."""
        dataset_filter, params = self._dataset_filter(datasets)
        return self._claim_where(
            owner, lease_seconds, f"state = 'pending'{dataset_filter} ORDER BY attempts, id", limit, params
        )

    def claim_following(
        self, owner: str, lease_seconds: float, head: ClaimedUnit, limit: int
    ) -> list[ClaimedUnit]:
        """Take up to `limit` pending units of the same dataset and ticker that directly
        follow `head` in time (no gap), so one request can serve them all."""
        if limit <= 0:
            return []
        claimed = self._claim_where(
            owner,
            lease_seconds,
            "state = 'pending' AND dataset = :_d AND ticker = :_t AND period_start > :_after "
            "ORDER BY period_start",
            limit,
            {"_d": head.dataset, "_t": head.ticker, "_after": head.period_start.isoformat()},
        )
        claimed.sort(key=lambda unit: unit.period_start)
        contiguous: list[ClaimedUnit] = []
        previous_end = head.period_end
        for unit in claimed:
            if unit.period_start != previous_end + dt.timedelta(days=1):
                break
            contiguous.append(unit)
            previous_end = unit.period_end
        for unit in claimed[len(contiguous) :]:
            self.release(unit, undo_attempt=True)
        return contiguous

    def _claim_where(
        self, owner: str, lease_seconds: float, selection: str, limit: int, params: dict
    ) -> list[ClaimedUnit]:
        return self._claim_with_token(uuid.uuid4().hex, owner, lease_seconds, selection, limit, params)

    @_reconnecting
    def _claim_with_token(
        self, token: str, owner: str, lease_seconds: float, selection: str, limit: int, params: dict
    ) -> list[ClaimedUnit]:
        """One claim under `token`. Repeated after a dropped connection, it first looks for
        units the lost answer had claimed (the COMMIT may have landed): they are this
        claim's, and would otherwise stay leased to the run, renewed by its heartbeat."""
        now = self.clock()
        if getattr(self._local, "retrying", False):
            landed = (
                self._statement()
                .execute(
                    "SELECT id, dataset, ticker, period_start, period_end, attempts FROM units "
                    "WHERE lease_token = :token AND state = 'running'",
                    {"token": token},
                )
                .fetchall()
            )
            if landed:
                return self._claimed(landed, token, now)
        params = dict(
            params,
            owner=owner,
            token=token,
            expires=iso(now + dt.timedelta(seconds=lease_seconds)),
            limit=limit,
        )
        if self.postgres:
            # the picked rows are locked as they are read; rows another claim holds are skipped,
            # so concurrent claims neither wait nor overlap (ARRAY(): the subquery runs once)
            picked = (
                f"id = ANY(ARRAY(SELECT id FROM units WHERE {selection} LIMIT :limit FOR UPDATE SKIP LOCKED))"
            )
        else:
            picked = f"id IN (SELECT id FROM units WHERE {selection} LIMIT :limit)"
        rows = self._move(
            self._statement(),
            UnitState.RUNNING,
            {UnitState.PENDING},
            picked,
            params,
            by_id=True,
            sets="lease_owner = :owner, lease_token = :token, lease_expires_at = :expires, "
            "attempts = attempts + 1",
            returning="id, dataset, ticker, period_start, period_end, attempts",
        ).fetchall()
        return self._claimed(rows, token, now)

    @staticmethod
    def _claimed(rows: list, token: str, now: dt.datetime) -> list[ClaimedUnit]:
        claimed_at = iso(now)
        return [
            ClaimedUnit(
                id=row["id"],
                dataset=row["dataset"],
                ticker=row["ticker"],
                period_start=dt.date.fromisoformat(row["period_start"]),
                period_end=dt.date.fromisoformat(row["period_end"]),
                attempts=row["attempts"],
                lease_token=token,
                claimed_at=claimed_at,
            )
            for row in sorted(rows, key=lambda r: r["id"])
        ]

    @_reconnecting
    def heartbeat(self, owner: str, lease_seconds: float) -> int:
        """Extend every lease `owner` holds. Returns how many units it still holds."""
        expires = iso(self.clock() + dt.timedelta(seconds=lease_seconds))
        # PostgreSQL: lock the rows in id order, as settle_fetched does, so a heartbeat and a
        # settle of the same owner's units cannot deadlock
        where = (
            "id IN (SELECT id FROM units WHERE lease_owner = :owner AND state = 'running' "
            "ORDER BY id FOR UPDATE)"
            if self.postgres
            else "lease_owner = :owner"
        )
        with self._write() as cursor:
            return cursor.execute(
                f"UPDATE units SET lease_expires_at = :expires WHERE {where} AND state = 'running'",
                {"expires": expires, "owner": owner},
            ).rowcount

    @_reconnecting
    def reclaim_expired(
        self, before_commit: Callable[[list[tuple[str, str, dt.date]]], object] | None = None
    ) -> list[tuple[str, str, dt.date]]:
        """Put units whose lease ran out (their worker died) back to pending. Returns them
        as (dataset, ticker, period_start): their folders are the only places a dead worker
        can have left a half-written temporary. `before_commit(units)` runs before they are
        released, so if it fails (or this process dies) they stay expired and the next
        reclaim sees them again.

        The lost attempt is recorded (every attempt is a row in `unit_attempts`), and the
        runs that held those leases, still open, are closed as `lost` as of their last
        heartbeat."""
        now = iso(self.clock())
        with self._write() as cursor:
            # read the holders first: RETURNING shows the row after the update (no owner)
            lock = " FOR UPDATE" if self.postgres else ""
            holders = {
                row[0]: (row[1], row[2])
                for row in cursor.execute(
                    "SELECT id, lease_owner, updated_at FROM units "
                    f"WHERE state = 'running' AND lease_expires_at < :now_iso{lock}",
                    {"now_iso": now},
                ).fetchall()
            }
            if not holders:
                return []
            rows = self._move(
                cursor,
                UnitState.PENDING,
                {UnitState.RUNNING},
                "lease_expires_at < :now_iso",
                {"now_iso": now},
                sets="lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
                f"error_class = '{_LEASE_EXPIRED}', last_error = '{_LEASE_EXPIRED_TEXT}'",
                returning="id, dataset, ticker, period_start",
            ).fetchall()
            moved = [(unit_id, *holders[unit_id]) for unit_id, *_ in rows if unit_id in holders]
            self._record_lost_attempts(cursor, moved, now)
            reclaimed = [
                (dataset, ticker, dt.date.fromisoformat(str(start)[:10])) for _, dataset, ticker, start in rows
            ]
            if reclaimed and before_commit is not None:
                before_commit(reclaimed)
        return reclaimed

    def _record_lost_attempts(self, cursor: sqlite3.Cursor, moved: list[tuple], now: str) -> None:
        """One `unit_attempts` row per reclaimed unit, charged to the run that held it, and
        that run closed as `lost` (ended when it was last seen) if it never ended."""
        owners = sorted({owner for _, owner, _ in moved if owner})
        runs: dict[str, str] = {}
        if owners:
            test, params = in_list("owner", owners, "o")
            runs = dict(cursor.execute(f"SELECT owner, id FROM runs WHERE {test}", params).fetchall())
            cursor.execute(
                "UPDATE runs SET outcome = 'lost', ended_at = COALESCE(last_seen_at, started_at) "
                f"WHERE ended_at IS NULL AND {test}",
                params,
            )
        for unit_id, owner, claimed_at in moved:
            cursor.execute(
                _INSERT_ATTEMPT,
                {
                    "unit_id": unit_id,
                    "run_id": runs.get(owner),
                    "started_at": claimed_at,
                    "ended_at": now,
                    "outcome": UnitState.PENDING.value,
                    "error_class": _LEASE_EXPIRED,
                    "error": _LEASE_EXPIRED_TEXT,
                    "http_status": None,
                    "request_id": None,
                    "requests": 0,  # whatever the dead worker sent was never reported
                    "bytes": 0,
                    "bars": 0,
                    "duplicates": 0,
                },
            )

    def _settle(
        self,
        cursor: sqlite3.Cursor,
        unit: ClaimedUnit,
        target: UnitState,
        sets: str,
        params: dict,
        attempt: AttemptRecord,
        run_id: str | None,
    ) -> bool:
        """Move a claimed unit out of running and record the attempt; False (and nothing
        written) if its lease was lost to another worker."""
        moved = self._move(
            cursor,
            target,
            {UnitState.RUNNING},
            "id = :id AND lease_token = :token",
            dict(params, id=unit.id, token=unit.lease_token, add_requests=attempt.requests),
            sets="lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
            "requests = requests + :add_requests, " + sets,
        ).rowcount
        if moved != 1:
            return False
        cursor.execute(
            _INSERT_ATTEMPT,
            {
                "unit_id": unit.id,
                "run_id": run_id,
                "started_at": unit.claimed_at,
                "ended_at": iso(self.clock()),
                "outcome": target.value,
                "error_class": attempt.error_class,
                "error": attempt.error,
                "http_status": attempt.http_status,
                "request_id": attempt.request_id,
                "requests": attempt.requests,
                "bytes": attempt.bytes,
                "bars": attempt.bars,
                "duplicates": attempt.duplicates,
            },
        )
        return True

    @_reconnecting
    def _settle_one(
        self,
        unit: ClaimedUnit,
        target: UnitState,
        sets: str,
        params: dict,
        attempt: AttemptRecord,
        run_id: str | None,
    ) -> None:
        with self._write() as cursor:
            if not self._settle(cursor, unit, target, sets, params, attempt, run_id):
                raise LeaseLost(f"unit {unit.id} ({unit.ticker} {unit.period_start}) is no longer ours")

    @_reconnecting
    def settle_fetched(
        self, fetched: Sequence[FetchedUnit], adjusted: bool | None, run_id: str | None = None
    ) -> list[bool]:
        """Settle units whose answer is complete, in one transaction: `done` with their
        file (already in place), or `empty_confirmed` when they have no bars. Returns, per
        unit, whether it was still ours (a lost lease leaves that unit to its new owner).
        One commit per page's worth of units instead of one per unit."""
        # in id order: two transactions locking units always take them in one order
        order = sorted(range(len(fetched)), key=lambda i: fetched[i].unit.id)
        settled = [False] * len(fetched)
        with self._write() as cursor:
            for i in order:
                item = fetched[i]
                settled[i] = self._settle(
                    cursor, item.unit, *_fetched_change(item, adjusted), item.attempt, run_id
                )
        return settled

    def settle_done(
        self,
        unit: ClaimedUnit,
        stored: StoredFile,
        adjusted: bool,
        attempt: AttemptRecord,
        run_id: str | None = None,
    ) -> None:
        """The unit's file is in place: record it, its rows and checksum, in one step."""
        self._settle_one(
            unit, *_fetched_change(FetchedUnit(unit, attempt, stored), adjusted), attempt, run_id
        )

    def settle_empty(
        self, unit: ClaimedUnit, adjusted: bool, attempt: AttemptRecord, run_id: str | None = None
    ) -> None:
        """A complete, successful answer with no bars."""
        self._settle_one(unit, *_fetched_change(FetchedUnit(unit, attempt, None), adjusted), attempt, run_id)

    def settle_failed(self, unit: ClaimedUnit, attempt: AttemptRecord, run_id: str | None = None) -> None:
        self._settle_one(
            unit,
            UnitState.FAILED,
            "last_error = :error, error_class = :error_class",
            {"error": attempt.error, "error_class": attempt.error_class},
            attempt,
            run_id,
        )

    def requeue(self, unit: ClaimedUnit, attempt: AttemptRecord, run_id: str | None = None) -> None:
        """A transient failure with attempts left: back to pending (behind untried units),
        the error kept on the unit and in its attempt history."""
        self._settle_one(
            unit,
            UnitState.PENDING,
            "last_error = :error, error_class = :error_class",
            {"error": attempt.error, "error_class": attempt.error_class},
            attempt,
            run_id,
        )

    @_reconnecting
    def release(self, unit: ClaimedUnit, *, undo_attempt: bool) -> bool:
        """Give a claimed unit back (shutdown, bad key). `undo_attempt` keeps its attempt
        count as if it had never been claimed. Returns False if it was no longer ours."""
        released = self._move(
            self._statement(),
            UnitState.PENDING,
            {UnitState.RUNNING},
            "id = :id AND lease_token = :token",
            {"id": unit.id, "token": unit.lease_token, "undo": 1 if undo_attempt else 0},
            sets="lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
            "attempts = attempts - :undo",
        ).rowcount
        return released == 1

    @_reconnecting
    def reset_units(self, where: str, params: dict, sources: set[UnitState]) -> int:
        """Put matching settled/failed units back to pending (retry, repair, re-plan), with a
        fresh attempt budget; their history stays in unit_attempts."""
        with self._write() as cursor:
            return self._move(cursor, UnitState.PENDING, sources, where, params, sets="attempts = 0").rowcount

    def failed_classes(self) -> dict[str, int]:
        rows = self.query(
            "SELECT coalesce(error_class, 'unknown') AS c, count(*) AS n FROM units "
            "WHERE state = 'failed' GROUP BY 1"
        )
        return {row.c: row.n for row in rows}

    @_reconnecting
    def replace_splits(self, ticker: str, splits: Sequence[tuple[str, float, float]]) -> None:
        """The ticker's known splits, (execution_date, split_from, split_to), replaced whole."""
        now = iso(self.clock())
        with self._write() as cursor:
            cursor.execute("DELETE FROM splits WHERE ticker = ?", (ticker,))
            cursor.executemany(
                "INSERT INTO splits (ticker, execution_date, split_from, split_to, recorded_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ticker, execution_date) DO NOTHING",
                [(ticker, day, split_from, split_to, now) for day, split_from, split_to in splits],
            )

    def replace_quality_flags(self, datasets: Sequence[str], flags: Iterable[dict]) -> int:
        """The findings of a quality check of `datasets`, replacing that check's earlier
        ones. Each flag: dataset, ticker, session_date, check_name, detail, value, unit_id
        (the last three may be None). Returns how many were stored."""
        now = iso(self.clock())
        rows = [
            (
                now,
                flag["dataset"],
                flag["ticker"],
                flag.get("session_date"),
                flag["check_name"],
                flag["detail"],
                flag.get("value"),
                flag.get("unit_id"),
            )
            for flag in flags
        ]
        return self._store_quality_flags(list(datasets), rows)

    @_reconnecting
    def _store_quality_flags(self, datasets: list[str], rows: list[tuple]) -> int:
        with self._write() as cursor:
            cursor.executemany("DELETE FROM quality_flags WHERE dataset = ?", [(name,) for name in datasets])
            cursor.executemany(
                "INSERT INTO quality_flags (checked_at, dataset, ticker, session_date, check_name, detail, "
                "value, unit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    @_reconnecting
    def claim_setting(self, key: str, value: str) -> str:
        """Record `value` for `key` unless the ledger has one already; returns the stored
        value. Atomic, so two processes starting together agree on the first one."""
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO settings (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING",
                {"k": key, "v": value},
            )
            return cursor.execute("SELECT value FROM settings WHERE key = :k", {"k": key}).fetchone()[0]

    # --- runs ------------------------------------------------------------------------

    @_reconnecting
    def start_run(
        self,
        run_id: str,
        *,
        workers: int,
        rate: float,
        adjusted: bool,
        base_url: str,
        owner: str | None = None,
    ) -> None:
        now = iso(self.clock())
        with self.engine.begin() as connection:
            connection.execute(
                insert(_RUNS),
                {
                    "id": run_id,
                    "owner": owner,
                    "started_at": now,
                    "last_seen_at": now,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "workers": workers,
                    "rate": rate,
                    "adjusted": adjusted,
                    "base_url": base_url,
                },
            )

    @_reconnecting
    def run_alive(self, run_id: str, units_settled: int, requests: int) -> None:
        """A heartbeat of the run: its counters so far, and when it was last seen alive
        (a run that dies keeps what it did; the reclaim of its leases closes it)."""
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE runs SET last_seen_at = :now, units_settled = :settled, requests = :requests "
                    "WHERE id = :id AND ended_at IS NULL"
                ),
                {"now": iso(self.clock()), "settled": units_settled, "requests": requests, "id": run_id},
            )

    @_reconnecting
    def end_run(self, run_id: str, outcome: str, units_settled: int, requests: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE runs SET ended_at = :now, last_seen_at = :now, outcome = :outcome, "
                    "units_settled = :settled, requests = :requests WHERE id = :id"
                ),
                {
                    "now": iso(self.clock()),
                    "outcome": outcome,
                    "settled": units_settled,
                    "requests": requests,
                    "id": run_id,
                },
            )

    # --- reading ---------------------------------------------------------------------

    def query(self, sql: str, params: dict | None = None) -> list:
        """Rows of a read query (named parameters), for audits and tests."""
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params or {}).all())

    def counts(self) -> dict[str, dict[str, int]]:
        """{dataset: {state: units}}"""
        result: dict[str, dict[str, int]] = {}
        for row in self.query("SELECT dataset, state, count(*) AS n FROM units GROUP BY dataset, state"):
            result.setdefault(row.dataset, {})[row.state] = row.n
        return result

    def open_work(self, owner: str, datasets: Sequence[str] | None = None) -> tuple[int, int]:
        """(pending units, units running under someone else's live lease)."""
        dataset_filter, params = self._dataset_filter(datasets)
        params.update(owner=owner, now=iso(self.clock()))
        row = self.query(
            "SELECT "
            f"(SELECT count(*) FROM units WHERE state = 'pending'{dataset_filter}) AS pending, "
            "(SELECT count(*) FROM units WHERE state = 'running' AND lease_owner != :owner "
            f"AND lease_expires_at >= :now{dataset_filter}) AS others",
            params,
        )[0]
        return row.pending, row.others

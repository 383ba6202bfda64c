"""State changes: every one goes through `UnitMoves._move`, one UPDATE checked against the
state machine (`states.py`); and the row each attempt leaves in `unit_attempts`."""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Callable, Sequence

from polyledger.ledger.connection import LedgerConnection
from polyledger.ledger.records import in_list, iso
from polyledger.ledger.states import UnitState, allowed_sources
from polyledger.periods import stored_date


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
    """The UPDATE behind `UnitMoves._move`, built once per shape (claims and settles repeat a
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


_LEASE_EXPIRED = "lease_expired"
_LEASE_EXPIRED_TEXT = "lease expired: its worker stopped"

_INSERT_ATTEMPT = (
    "INSERT INTO unit_attempts (unit_id, run_id, started_at, ended_at, outcome, error_class, error, "
    "http_status, request_id, requests, bytes, bars, duplicates) VALUES (:unit_id, :run_id, :started_at, "
    ":ended_at, :outcome, :error_class, :error, :http_status, :request_id, :requests, :bytes, :bars, "
    ":duplicates)"
)


class UnitMoves(LedgerConnection):
    """The one way a unit changes state."""

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

    def _take_back(
        self,
        cursor: sqlite3.Cursor,
        where: str,
        params: dict,
        now: str,
        error: str,
        before_commit: Callable[[list[tuple[str, str, dt.date]]], object] | None = None,
        *,
        error_class: str = _LEASE_EXPIRED,
        runs_lost: bool = True,
    ) -> list[tuple[str, str, dt.date]]:
        """Running units where `where` holds back to pending, in the caller's transaction:
        their lost attempts recorded (`error`, `error_class`), their runs closed as `lost`
        (`runs_lost`: they stopped; a run a plan took a unit from goes on)."""
        # read the holders first: RETURNING shows the row after the update (no owner);
        # PostgreSQL: locked in id order, so two runs taking back the same units never deadlock
        lock = " FOR UPDATE" if self.postgres else ""
        holders = {
            row[0]: (row[1], row[2])
            for row in cursor.execute(
                f"SELECT id, lease_owner, updated_at FROM units WHERE state = 'running' AND {where} "
                f"ORDER BY id{lock}",
                params,
            ).fetchall()
        }
        if not holders:
            return []
        rows = self._move(
            cursor,
            UnitState.PENDING,
            {UnitState.RUNNING},
            where,
            dict(params, _lost_text=error, _lost_class=error_class),
            sets="lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
            "error_class = :_lost_class, last_error = :_lost_text",
            returning="id, dataset, ticker, period_start",
        ).fetchall()
        moved = [(unit_id, *holders[unit_id]) for unit_id, *_ in rows if unit_id in holders]
        self._record_lost_attempts(cursor, moved, now, error, error_class=error_class, runs_lost=runs_lost)
        reclaimed = [(dataset, ticker, stored_date(start)) for _, dataset, ticker, start in rows]
        if reclaimed and before_commit is not None:
            before_commit(reclaimed)
        return reclaimed

    def _record_lost_attempts(
        self,
        cursor: sqlite3.Cursor,
        moved: list[tuple],
        now: str,
        error: str = _LEASE_EXPIRED_TEXT,
        *,
        error_class: str = _LEASE_EXPIRED,
        runs_lost: bool = True,
    ) -> None:
        """One `unit_attempts` row per unit taken from its holder ((id, lease owner, claimed
        at)), charged to the run that held it, and, `runs_lost`, that run closed as `lost`
        (ended when it was last seen) if it never ended; a run still going (a plan took a
        unit from it) stays open."""
        owners = sorted({owner for _, owner, _ in moved if owner})
        runs: dict[str, str] = {}
        if owners:
            test, params = in_list("owner", owners, "o")
            runs = dict(cursor.execute(f"SELECT owner, id FROM runs WHERE {test}", params).fetchall())
            if runs_lost:
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
                    "error_class": error_class,
                    "error": error,
                    "http_status": None,
                    "request_id": None,
                    "requests": 0,  # whatever its worker sent was never reported
                    "bytes": 0,
                    "bars": 0,
                    "duplicates": 0,
                },
            )

    def _scope_filter(
        self, datasets: Sequence[str] | None, window: tuple[dt.date, dt.date] | None = None
    ) -> tuple[str, dict]:
        """` AND dataset IN (...)` (and a period window) for claims and counts of pending
        units; `+dataset` (SQLite) filters the rows found through the pending index instead
        of searching by dataset. `window`: only units whose period starts in it."""
        test, params = "", {}
        if datasets:
            names, params = in_list(f"{self._plus}dataset", datasets, "_ds")
            test = f" AND {names}"
        if window is not None:
            test += " AND period_start >= :_w0 AND period_start <= :_w1"
            params = {**params, "_w0": window[0].isoformat(), "_w1": window[1].isoformat()}
        return test, params

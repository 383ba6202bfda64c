"""State changes: every one goes through `UnitMoves._move`, one UPDATE checked against the
state machine (`states.py`); and the row each attempt leaves in `unit_attempts`."""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Sequence

from polyledger.ledger.connection import LedgerConnection
from polyledger.ledger.records import in_list, iso
from polyledger.ledger.states import UnitState, allowed_sources


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

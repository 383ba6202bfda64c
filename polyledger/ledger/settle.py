"""Settling claimed units: done with their file, empty, failed, or queued again, each with
its attempt recorded, and only while the worker still holds the lease."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from polyledger.errors import LeaseLost
from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import _INSERT_ATTEMPT, UnitMoves
from polyledger.ledger.records import AttemptRecord, ClaimedUnit, FetchedUnit, StoredFile, iso
from polyledger.ledger.states import UnitState


def _fetched_change(item: FetchedUnit, adjusted: bool | None) -> tuple[UnitState, str, dict]:
    """The state and columns a complete answer sets (for `Settling._settle`)."""
    fetched = "adjusted = :adjusted, last_error = NULL, error_class = NULL, source = :source, " + (
        "fetched_at = :_now" if item.as_of is None else "fetched_at = :as_of"
    )
    if item.stored is None:
        return (
            UnitState.EMPTY_CONFIRMED,
            f"rows = 0, file_path = NULL, checksum = NULL, bytes = NULL, {fetched}",
            {"adjusted": adjusted, "source": item.source, "as_of": item.as_of},
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
            "source": item.source,
            "as_of": item.as_of,
        },
    )


class Settling(UnitMoves):
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
                if settled[i]:
                    self._record_unattributed(cursor, item)
        return settled

    def _record_unattributed(self, cursor: sqlite3.Cursor, item: FetchedUnit) -> None:
        """The unit's bars outside every known listing, replacing what an earlier fetch found."""
        cursor.execute("DELETE FROM unattributed_bars WHERE unit_id = :id", {"id": item.unit.id})
        found = item.unattributed
        if found is not None and item.stored is not None:
            cursor.execute(
                "INSERT INTO unattributed_bars (unit_id, ticker, first_day, last_day, bars, recorded_at) "
                "VALUES (:id, :ticker, :first, :last, :bars, :now)",
                {
                    "id": item.unit.id,
                    "ticker": item.unit.ticker,
                    "first": found.first_day.isoformat(),
                    "last": found.last_day.isoformat(),
                    "bars": found.bars,
                    "now": iso(self.clock()),
                },
            )

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

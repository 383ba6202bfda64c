"""Claims and leases: units taken under a lease, leases kept alive by a heartbeat, units
given back, and the units of a worker that died reclaimed (its lost attempt recorded)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import _LEASE_EXPIRED_TEXT, UnitMoves
from polyledger.ledger.records import ClaimedUnit, iso
from polyledger.ledger.states import UnitState


class Claims(UnitMoves):
    def claim(
        self,
        owner: str,
        lease_seconds: float,
        limit: int = 1,
        datasets: Sequence[str] | None = None,
        window: tuple[dt.date, dt.date] | None = None,
    ) -> list[ClaimedUnit]:
        """Atomically take up to `limit` pending units under a lease held by `owner`:
        least-tried first (a unit that keeps failing waits behind the others), then id order;
        of `datasets` and of periods starting in `window` when given (then earliest period
        first, in the order of an index of its own: the other windows' pending units are
        never walked past)."""
        dataset_filter, params = self._scope_filter(datasets, window)
        order = "attempts, id" if window is None else "attempts, period_start, id"
        return self._claim_where(
            owner, lease_seconds, f"state = 'pending'{dataset_filter} ORDER BY {order}", limit, params
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
                    "SELECT id, dataset, ticker, period_start, period_end, attempts, file_path FROM units "
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
            returning="id, dataset, ticker, period_start, period_end, attempts, file_path",
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
                previous_file=row["file_path"],
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
    def still_holds(self, unit: ClaimedUnit) -> bool:
        """Is `unit` still running under this claim's lease, and the lease not run out? Asked
        right before a unit's file replaces the one in place: a worker whose lease lapsed
        (the unit may have a new owner, who may have written it already) must not."""
        rows = (
            self._statement()
            .execute(
                "SELECT id FROM units WHERE id = :id AND lease_token = :token "
                "AND state = 'running' AND lease_expires_at >= :now_iso",
                {"id": unit.id, "token": unit.lease_token, "now_iso": iso(self.clock())},
            )
            .fetchall()
        )
        return len(rows) == 1

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
            return self._take_back(
                cursor,
                "lease_expires_at < :now_iso",
                {"now_iso": now},
                now,
                _LEASE_EXPIRED_TEXT,
                before_commit,
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

"""Runs that stopped beating: who is seen alive, and taking back the units of a run that
others watched stay silent (`polyledger.fetch.silence` decides who is silent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from polyledger.ledger.claims import Claims
from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.records import in_list, iso

_SILENT_TEXT = "taken back: its run stopped sending heartbeats"


class Liveness(Claims):
    def runs_last_seen(self, owner: str) -> dict[str, str]:
        """Every open run of another owner that holds running units: owner -> its
        `last_seen_at` as stored (a value to compare, never a time to trust: it was read
        off the other host's clock)."""
        rows = self.query(
            "SELECT r.owner, r.last_seen_at FROM runs r WHERE r.ended_at IS NULL "
            "AND r.owner IS NOT NULL AND r.owner != :me AND r.last_seen_at IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM units u WHERE u.state = 'running' AND u.lease_owner = r.owner)",
            {"me": owner},
        )
        return {row.owner: str(row.last_seen_at) for row in rows}

    @_reconnecting
    def reclaim_silent(
        self,
        silent: Mapping[str, str],
        before_commit: Callable[[list[tuple[str, str, dt.date]]], object] | None = None,
    ) -> list[tuple[str, str, dt.date]]:
        """Put the units of runs seen silent (owner -> the `last_seen_at` they kept) back to
        pending, as `reclaim_expired` does for expired leases (lost attempts recorded, runs
        closed as `lost`, `before_commit` first). Only runs still open and still showing
        that very `last_seen_at` inside this transaction: a run that beat since keeps its
        units."""
        if not silent:
            return []
        now = iso(self.clock())
        with self._write() as cursor:
            test, params = in_list("owner", sorted(silent), "o")
            still = cursor.execute(
                f"SELECT owner, last_seen_at FROM runs WHERE ended_at IS NULL AND {test}", params
            ).fetchall()
            dead = sorted(owner for owner, seen in still if str(seen) == silent[owner])
            if not dead:
                return []
            # checked again in the take-back's own statements: on PostgreSQL a heartbeat can
            # commit between the read above and them (SQLite's write lock keeps it out)
            params = {}
            tests = []
            for i, owner in enumerate(dead):
                params[f"o{i}"], params[f"s{i}"] = owner, silent[owner]
                tests.append(
                    f"(lease_owner = :o{i} AND EXISTS (SELECT 1 FROM runs r WHERE r.owner = :o{i} "
                    f"AND r.ended_at IS NULL AND r.last_seen_at = :s{i}))"
                )
            where = "(" + " OR ".join(tests) + ")"
            return self._take_back(cursor, where, params, now, _SILENT_TEXT, before_commit)

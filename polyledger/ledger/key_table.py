"""The key board in the ledger: runs sharing an API key publish their figures and read each
other's (`polyledger.polygon.keyshare`). Times are epoch seconds of each run's host."""

from __future__ import annotations

from polyledger.ledger.connection import LedgerConnection, _reconnecting

_MEMBER_COLUMNS = "member, joined_at, rate, anchor, known, throttled, ok"


class KeyTable(LedgerConnection):
    @_reconnecting
    def publish_key_member(
        self,
        key_id: str,
        member: str,
        *,
        now: float,
        rate: float,
        anchor: float,
        known: float | None,
        throttled: int,
        ok: int = 0,
        learned: float | None = None,
    ) -> None:
        """This run's figures on the key now (its row made at its first call, when it
        joined); with `learned`, the key's limit it has just measured, for later runs."""
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO key_members "
                "(member, key_id, joined_at, seen_at, rate, anchor, known, throttled, ok) "
                "VALUES (:m, :k, :now, :now, :rate, :anchor, :known, :throttled, :ok) "
                "ON CONFLICT (member) DO UPDATE SET seen_at = :now, rate = :rate, anchor = :anchor, "
                "known = :known, throttled = :throttled, ok = :ok",
                {
                    "m": member,
                    "k": key_id,
                    "now": now,
                    "rate": rate,
                    "anchor": anchor,
                    "known": known,
                    "throttled": throttled,
                    "ok": ok,
                },
            )
            if learned is not None:
                cursor.execute(
                    "INSERT INTO key_rates (key_id, limit_rps, learned_at, learned_by) "
                    "VALUES (:k, :l, :now, :m) ON CONFLICT (key_id) "
                    "DO UPDATE SET limit_rps = :l, learned_at = :now, learned_by = :m",
                    {"k": key_id, "l": learned, "now": now, "m": member},
                )

    @_reconnecting
    def key_members(
        self, key_id: str, seen_since: float
    ) -> list[tuple[str, float, float, float, float | None, int, int]]:
        """(member, joined_at, rate, anchor, known, throttled, ok) of the runs on the key seen
        since `seen_since`, first joined first."""
        rows = self.query(
            f"SELECT {_MEMBER_COLUMNS} FROM key_members WHERE key_id = :k AND seen_at >= :since "
            "ORDER BY joined_at, member",
            {"k": key_id, "since": seen_since},
        )
        return [
            (
                r[0],
                float(r[1]),
                float(r[2]),
                float(r[3]),
                None if r[4] is None else float(r[4]),
                int(r[5]),
                int(r[6]),
            )
            for r in rows
        ]

    @_reconnecting
    def learned_key_rate(self, key_id: str, since: float) -> float | None:
        """The key's limit as last measured, if measured since `since`."""
        rows = self.query(
            "SELECT limit_rps FROM key_rates WHERE key_id = :k AND learned_at >= :since",
            {"k": key_id, "since": since},
        )
        return float(rows[0][0]) if rows else None

    @_reconnecting
    def leave_key(self, member: str, stale_before: float) -> None:
        """This run stopped sending; rows of runs not seen since `stale_before` (killed) go too."""
        with self._write() as cursor:
            cursor.execute(
                "DELETE FROM key_members WHERE member = :m OR seen_at < :stale",
                {"m": member, "stale": stale_before},
            )

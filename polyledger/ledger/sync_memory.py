"""What `polyledger sync` reads and holds in the ledger: the plans and universe builds it
repeats (`planned`, `universe_builds`), and its lock (`sync_lock`).

The lock's times are the database's own clock (SQLite: the one host that opens the file;
PostgreSQL: the server's), so hosts' clocks are never compared: a heartbeat's age is
measured by the clock that wrote it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from polyledger.ledger.connection import LedgerConnection, _reconnecting
from polyledger.ledger.records import iso
from polyledger.periods import stored_date

_PG_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
_SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


@dataclass(frozen=True)
class RememberedPlan:
    dataset: str
    universe: str  # absolute path of the universe file; '' for none
    first_day: dt.date | None
    last_day: dt.date | None  # the --to given last; None: through yesterday (what `sync` plans through)
    # the latest --to ever given, or session a sync planned through; None: one was given
    # none, or none known (per-ticker datasets)
    widest_day: dt.date | None = None


@dataclass(frozen=True)
class RememberedUniverse:
    out: str  # absolute path of the CSV
    types: tuple[str, ...]
    exchanges: tuple[str, ...]
    cap_max: float | None
    as_of: dt.date | None


@dataclass(frozen=True)
class LockHolder:
    token: str
    host: str
    pid: int
    since: str  # ISO UTC
    beat_at: str  # ISO UTC, last heartbeat
    age: float  # seconds since the last heartbeat, by the database's clock


def _day(value: object) -> dt.date | None:
    return stored_date(value) if value else None


def _seconds_between(earlier: str, later: str) -> float:
    parse = lambda text: dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(later) - parse(earlier)).total_seconds()


class SyncMemory(LedgerConnection):
    @property
    def _db_now(self) -> str:
        return _PG_NOW if self.postgres else _SQLITE_NOW

    # --- what was planned -------------------------------------------------------------

    @_reconnecting
    def remember_plan(
        self, dataset: str, universe: str, first_day: dt.date | None, last_day: dt.date | None
    ) -> None:
        """One row per dataset and universe file: the earliest --from ever asked, the last
        --to given (None: through yesterday; what `sync` plans through) and the latest --to
        ever given (`widest_day`; None once one was given none): a narrower or an earlier
        plan since does not shrink the range `audit` judges."""
        first = first_day.isoformat() if first_day else None
        last = last_day.isoformat() if last_day else None
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO planned (dataset, universe, first_day, last_day, widest_day, planned_at) "
                "VALUES (:d, :u, :f, :l, :l, :now) ON CONFLICT (dataset, universe) DO UPDATE SET "
                # min() of two texts, NULL-safe, the same SQL on both dialects
                "first_day = CASE WHEN planned.first_day IS NULL OR excluded.first_day < planned.first_day "
                "THEN excluded.first_day ELSE planned.first_day END, "
                # max() of two texts where NULL (through yesterday) is the latest
                "widest_day = CASE WHEN planned.widest_day IS NULL OR excluded.widest_day IS NULL THEN NULL "
                "WHEN excluded.widest_day > planned.widest_day THEN excluded.widest_day "
                "ELSE planned.widest_day END, "
                "last_day = excluded.last_day, planned_at = excluded.planned_at, "
                # planned again: synced again (`sync --forget` undone)
                "forgotten = :no",
                {"d": dataset, "u": universe, "f": first, "l": last, "now": iso(self.clock()), "no": False},
            )

    @_reconnecting
    def extend_planned(self, dataset: str, universe: str, through: dt.date) -> None:
        """`sync` plans a remembered plan through `through` (its session), past any --to:
        that is planned too, so `widest_day` reaches it (None, through yesterday, already
        does). `audit` judges the holes and a change of listings is owed over this record:
        one that stopped at the --to left the days sync planned out of both."""
        with self._write() as cursor:
            cursor.execute(
                "UPDATE planned SET widest_day = :through WHERE dataset = :d AND universe = :u "
                "AND widest_day IS NOT NULL AND widest_day < :through",
                {"d": dataset, "u": universe, "through": through.isoformat()},
            )

    @_reconnecting
    def remembered_plans(self, *, forgotten: bool = False) -> list[RememberedPlan]:
        """The plans `sync` repeats; with `forgotten`, those `sync --forget` took out of
        it too (what was planned, for `audit`'s holes)."""
        where = "" if forgotten else " WHERE forgotten = :no"
        rows = self._statement().execute(
            f"SELECT dataset, universe, first_day, last_day, widest_day FROM planned{where} ORDER BY id",
            {"no": False},
        )
        return [RememberedPlan(r[0], r[1], _day(r[2]), _day(r[3]), _day(r[4])) for r in rows.fetchall()]

    @_reconnecting
    def forget_plans(self, dataset: str) -> int:
        """`sync` stops planning `dataset` (its units stay, and `audit` still judges the
        range it was planned for). Returns the rows forgotten."""
        with self._write() as cursor:
            return cursor.execute(
                "UPDATE planned SET forgotten = :yes WHERE dataset = :d AND forgotten = :no",
                {"d": dataset, "yes": True, "no": False},
            ).rowcount

    @_reconnecting
    def remember_universe(
        self,
        out: str,
        types: list[str],
        exchanges: list[str],
        cap_max: float | None,
        as_of: dt.date | None,
    ) -> None:
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO universe_builds (out, types, exchanges, cap_max, as_of, built_at) "
                "VALUES (:o, :t, :e, :c, :a, :now) ON CONFLICT (out) DO UPDATE SET types = excluded.types, "
                "exchanges = excluded.exchanges, cap_max = excluded.cap_max, as_of = excluded.as_of, "
                "built_at = excluded.built_at",
                {
                    "o": out,
                    "t": ",".join(types),
                    "e": ",".join(exchanges),
                    "c": cap_max,
                    "a": as_of.isoformat() if as_of else None,
                    "now": iso(self.clock()),
                },
            )

    @_reconnecting
    def remembered_universes(self) -> list[RememberedUniverse]:
        rows = self._statement().execute(
            "SELECT out, types, exchanges, cap_max, as_of FROM universe_builds ORDER BY out"
        )
        return [
            RememberedUniverse(r[0], tuple(r[1].split(",")), tuple(r[2].split(",")), r[3], _day(r[4]))
            for r in rows.fetchall()
        ]

    @_reconnecting
    def set_setting(self, key: str, value: str) -> None:
        """Record `value` for `key`, replacing any earlier one."""
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO settings (key, value) VALUES (:k, :v) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {"k": key, "v": value},
            )

    @_reconnecting
    def setting(self, key: str) -> str | None:
        row = self._statement().execute("SELECT value FROM settings WHERE key = :k", {"k": key}).fetchone()
        return None if row is None else row[0]

    # --- the lock ---------------------------------------------------------------------

    @_reconnecting
    def try_sync_lock(self, name: str, token: str, host: str, pid: int) -> bool:
        """Take the lock if nobody holds it (atomic: of two at once, one gets it)."""
        with self._write() as cursor:
            return (
                cursor.execute(
                    "INSERT INTO sync_lock (name, token, host, pid, since, beat_at) "
                    f"VALUES (:n, :t, :h, :p, {self._db_now}, {self._db_now}) ON CONFLICT (name) DO NOTHING",
                    {"n": name, "t": token, "h": host, "p": pid},
                ).rowcount
                == 1
            )

    @_reconnecting
    def sync_lock_holder(self, name: str) -> LockHolder | None:
        row = (
            self._statement()
            .execute(
                f"SELECT token, host, pid, since, beat_at, {self._db_now} AS now "
                "FROM sync_lock WHERE name = :n",
                {"n": name},
            )
            .fetchone()
        )
        if row is None:
            return None
        token, host, pid, since, beat_at, now = tuple(row)
        return LockHolder(token, host, int(pid), since, beat_at, max(0.0, _seconds_between(beat_at, now)))

    @_reconnecting
    def take_over_sync_lock(self, name: str, holder: LockHolder, token: str, host: str, pid: int) -> bool:
        """The lock of a holder found dead, taken only if it still shows the heartbeat it was
        judged by (one that beat since keeps it; of two takers, one wins)."""
        with self._write() as cursor:
            return (
                cursor.execute(
                    f"UPDATE sync_lock SET token = :t, host = :h, pid = :p, since = {self._db_now}, "
                    f"beat_at = {self._db_now} WHERE name = :n AND token = :old AND beat_at = :beat",
                    {"n": name, "t": token, "h": host, "p": pid, "old": holder.token, "beat": holder.beat_at},
                ).rowcount
                == 1
            )

    @_reconnecting
    def beat_sync_lock(self, name: str, token: str) -> bool:
        """The holder's heartbeat; False if the lock is no longer its own."""
        with self._write() as cursor:
            return (
                cursor.execute(
                    f"UPDATE sync_lock SET beat_at = {self._db_now} WHERE name = :n AND token = :t",
                    {"n": name, "t": token},
                ).rowcount
                == 1
            )

    @_reconnecting
    def release_sync_lock(self, name: str, token: str) -> None:
        with self._write() as cursor:
            cursor.execute("DELETE FROM sync_lock WHERE name = :n AND token = :t", {"n": name, "t": token})

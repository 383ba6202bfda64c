"""The ledger's side of the flat-file route (`polyledger/flatfiles/`): day files read
(`flat_files`), ticker units claimed a period at a time, and the ticker units a replaced
day file made stale."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.records import ClaimedUnit, in_list, in_lists, iso
from polyledger.ledger.states import UnitState
from polyledger.periods import stored_date

# Ticker units built from flat files whose days changed since: a day read again with
# another ETag after the unit was built (changed_at), a day whose object now has another
# ETag than the one read (seen by `audit --etags`), or a day queued again (not settled).
# The day units are those of `:day_dataset` inside the unit's period.
STALE_FLAT = (
    "SELECT DISTINCT u.id, u.dataset, u.ticker, u.period, u.period_start, u.period_end FROM units u "
    "JOIN units d ON d.dataset = :day_dataset AND d.period_start >= u.period_start "
    "AND d.period_start <= u.period_end "
    "LEFT JOIN flat_files f ON f.unit_id = d.id "
    "WHERE u.dataset = :dataset AND u.source = 'flatfiles' AND u.state IN ('done', 'empty_confirmed') "
    "AND (d.state NOT IN ('done', 'empty_confirmed') OR f.unit_id IS NULL "
    "OR (f.seen_etag IS NOT NULL AND f.seen_etag <> f.etag) OR f.changed_at > u.fetched_at)"
)
# day units whose object now has another ETag than the one read
CHANGED_DAYS = (
    "SELECT d.id FROM units d JOIN flat_files f ON f.unit_id = d.id WHERE d.dataset = :day_dataset "
    "AND f.seen_etag IS NOT NULL AND f.seen_etag <> f.etag AND d.state IN ('done', 'empty_confirmed')"
)

# day units (`:day_dataset`) read into a staged file that no unit of `:dataset` needs any
# more: every unit of the periods holding the day is settled
UNNEEDED_STAGED = (
    "SELECT d.id, d.file_path FROM units d WHERE d.dataset = :day_dataset AND d.state = 'done' "
    "AND d.file_path IS NOT NULL AND NOT EXISTS (SELECT 1 FROM units u WHERE u.dataset = :dataset "
    "AND u.period_start <= d.period_start AND u.period_end >= d.period_start "
    "AND u.state NOT IN ('done', 'empty_confirmed'))"
)
# day units a pending unit of `:dataset` needs that are read again: their staged file was
# deleted (`done`, no file), or they failed (a missing file published since: a `retry`
# of the ticker unit alone gives its days another try too)
DAYS_TO_READ_AGAIN = (
    "SELECT d.id FROM units d WHERE d.dataset = :day_dataset "
    "AND (d.state = 'failed' OR (d.state = 'done' AND d.file_path IS NULL)) "
    "AND EXISTS (SELECT 1 FROM units u WHERE u.dataset = :dataset "
    "AND u.period_start <= d.period_start AND u.period_end >= d.period_start AND u.state = 'pending')"
)


class FlatFileTable(UnitMoves):
    def claim_same_period(
        self, owner: str, lease_seconds: float, head: ClaimedUnit, limit: int
    ) -> list[ClaimedUnit]:
        """Up to `limit` pending units of `head`'s dataset and period, of the tickers after
        its own, in ticker order: one pass over the period's staged days serves them all
        (they are sorted by ticker, so a run of tickers is a few row groups)."""
        if limit <= 0:
            return []
        # `_claim_where` reconnects (Claims, in the Ledger), as for `claim_following`
        return self._claim_where(  # type: ignore[attr-defined]
            owner,
            lease_seconds,
            "state = 'pending' AND dataset = :_d AND ticker > :_t "
            "AND period = (SELECT period FROM units WHERE id = :_id) ORDER BY ticker",
            limit,
            {"_d": head.dataset, "_t": head.ticker, "_id": head.id},
        )

    def pending_periods(self, dataset: str) -> list[tuple[dt.date, dt.date]]:
        """The distinct (period_start, period_end) of `dataset`'s pending units."""
        rows = self.query(
            "SELECT DISTINCT period_start, period_end FROM units WHERE dataset = :d AND state = 'pending'",
            {"d": dataset},
        )
        return [(stored_date(a), stored_date(b)) for a, b in rows]

    def failed_with(self, dataset: str, error_class: str) -> list[Any]:
        """(id, period_start, period_end) of `dataset`'s units failed with `error_class`."""
        return self.query(
            "SELECT id, period_start, period_end FROM units WHERE dataset = :d AND state = 'failed' "
            "AND error_class = :c",
            {"d": dataset, "c": error_class},
        )

    def open_years(self, datasets: Sequence[str]) -> list[int]:
        """The years in which pending or running units of `datasets` start, in order (a
        running one may be a dead run's, taken back by the next claim)."""
        names, params = in_list("dataset", datasets, "d")
        rows = self.query(
            f"SELECT DISTINCT period_start FROM units WHERE state IN ('pending', 'running') AND {names}",
            params,
        )
        return sorted({int(str(row.period_start)[:4]) for row in rows})

    @_reconnecting
    def last_unit_id(self) -> int:
        """The highest unit id: it grows whenever a unit is planned (what a flat-file run's
        cached universe is checked against, at the cost of one index lookup)."""
        return int(self.query("SELECT coalesce(max(id), 0) AS n FROM units")[0].n)

    def tickers_by_period(self, dataset: str) -> dict[str, frozenset[str]]:
        """{period: the tickers with a unit of `dataset` in it}: what a day file is staged for."""
        rows = self._statement().execute(
            "SELECT DISTINCT period, ticker FROM units WHERE dataset = :d", {"d": dataset}
        )
        found: dict[str, set[str]] = defaultdict(set)
        for period, ticker in rows.fetchall():
            found[period].add(ticker)
        return {period: frozenset(tickers) for period, tickers in found.items()}

    @_reconnecting
    def record_flat_file(
        self, unit: ClaimedUnit, object_key: str, etag: str, size: int, rows: int, universe: str
    ) -> bool:
        """What a day unit's read found, replacing an earlier read's record (recorded before
        the unit settles: a reclaimed unit's next read records again). A new ETag marks
        the day changed now: ticker units built from it before are stale. Only while the
        read still holds the unit's lease (False, nothing written, otherwise): a read whose
        lease ran out must not replace the record of the read that took the unit over,
        whose staged file may hold another version of the day."""
        now = iso(self.clock())
        unit_id = unit.id
        with self._write() as cursor:
            held = cursor.execute(
                "SELECT id FROM units WHERE id = :id AND lease_token = :token "
                "AND state = 'running' AND lease_expires_at >= :now",
                {"id": unit_id, "token": unit.lease_token, "now": now},
            ).fetchone()
            if held is None:
                return False
            before = cursor.execute(
                "SELECT etag, changed_at FROM flat_files WHERE unit_id = :id", {"id": unit_id}
            ).fetchone()
            changed_at = (before[1] if before[0] == etag else now) if before else None
            cursor.execute("DELETE FROM flat_files WHERE unit_id = :id", {"id": unit_id})
            cursor.execute(
                "INSERT INTO flat_files (unit_id, object_key, etag, size, rows, universe, seen_etag, "
                "read_at, changed_at) VALUES (:id, :key, :etag, :size, :rows, :universe, :etag, :now, "
                ":changed)",
                {
                    "id": unit_id,
                    "key": object_key,
                    "etag": etag,
                    "size": size,
                    "rows": rows,
                    "universe": universe,
                    "now": now,
                    "changed": changed_at,
                },
            )
        return True

    def flat_days(self, day_dataset: str, start: dt.date, end: dt.date) -> list[Any]:
        """The day units of [start, end] (id, period_start, state, error_class, file_path,
        and `universe`: what the last read was staged for, None if never read), by date."""
        return self.query(
            "SELECT u.id, u.period_start, u.state, u.error_class, u.file_path, f.universe FROM units u "
            "LEFT JOIN flat_files f ON f.unit_id = u.id "
            "WHERE u.dataset = :d AND u.period_start >= :a AND u.period_start <= :b ORDER BY u.period_start",
            {"d": day_dataset, "a": start.isoformat(), "b": end.isoformat()},
        )

    def unrecorded_flat_days(self, day_dataset: str) -> list[int]:
        """Settled day units without a read on record (what they were staged for unknown)."""
        rows = self.query(
            "SELECT u.id FROM units u LEFT JOIN flat_files f ON f.unit_id = u.id WHERE u.dataset = :d "
            "AND u.state IN ('done', 'empty_confirmed') AND f.unit_id IS NULL",
            {"d": day_dataset},
        )
        return [row.id for row in rows]

    def flat_file_records(self, day_dataset: str) -> list[Any]:
        """(unit_id, period_start, object_key, etag, universe) of every day read and settled."""
        return self.query(
            "SELECT f.unit_id, u.period_start, f.object_key, f.etag, f.universe FROM flat_files f "
            "JOIN units u ON u.id = f.unit_id "
            "WHERE u.dataset = :d AND u.state IN ('done', 'empty_confirmed') ORDER BY u.period_start",
            {"d": day_dataset},
        )

    def done_units_with_source(self, dataset: str) -> list[Any]:
        """(dataset, ticker, period, period_start, period_end, file_path, source) of the
        dataset's done units, by id (what `flatfiles.reconcile` samples)."""
        return self.query(
            "SELECT dataset, ticker, period, period_start, period_end, file_path, source FROM units "
            "WHERE dataset = :d AND state = 'done' ORDER BY id",
            {"d": dataset},
        )

    @_reconnecting
    def note_seen_etags(self, seen: Mapping[int, str]) -> int:
        """The ETags the bucket lists now, per day unit (a missing object: ''). Returns how
        many differ from the one read."""
        with self._write() as cursor:
            for unit_id, etag in seen.items():
                cursor.execute(
                    "UPDATE flat_files SET seen_etag = :etag WHERE unit_id = :id",
                    {"etag": etag, "id": unit_id},
                )
            rows = cursor.execute(
                "SELECT count(*) FROM flat_files WHERE seen_etag IS NOT NULL AND seen_etag <> etag"
            ).fetchone()
        return int(rows[0])

    def stale_flat(self, dataset: str, day_dataset: str) -> list[Any]:
        """(id, dataset, ticker, period, period_start, period_end) of `dataset`'s units built
        from day files that changed since."""
        return self.query(
            f"SELECT * FROM ({STALE_FLAT}) AS stale ORDER BY ticker, period",
            {"dataset": dataset, "day_dataset": day_dataset},
        )

    def changed_days(self, day_dataset: str) -> list[Any]:
        """(id, period_start) of the day units whose object now has another ETag than the one read."""
        return self.query(
            f"SELECT id, period_start FROM units WHERE id IN ({CHANGED_DAYS}) ORDER BY period_start",
            {"day_dataset": day_dataset},
        )

    def reset_stale_flat(self, routes: Mapping[str, str], tickers: Sequence[str] = ()) -> int:
        """The stale ticker units of each dataset -> day dataset in `routes` (of `tickers`
        when given), and the day units whose object changed (those inside the queued
        units' periods, when `tickers` narrows them: another ticker's stale unit stays
        stale, its day file's change recorded), back to pending. Returns how many."""
        count = 0
        asked = set(tickers)
        for dataset, day_dataset in routes.items():
            stale = [row for row in self.stale_flat(dataset, day_dataset) if not asked or row.ticker in asked]
            count += self.reset_ids([row.id for row in stale], {UnitState.DONE, UnitState.EMPTY_CONFIRMED})
            spans = [(stored_date(row.period_start), stored_date(row.period_end)) for row in stale]
            days = [
                row.id
                for row in self.changed_days(day_dataset)
                if not tickers or any(first <= stored_date(row.period_start) <= last for first, last in spans)
            ]
            count += self.reset_ids(days, {UnitState.DONE, UnitState.EMPTY_CONFIRMED})
        return count

    def unneeded_staged(self, dataset: str, day_dataset: str) -> list[Any]:
        """(id, file_path) of the day units whose staged file no unit of `dataset` needs
        any more (every unit of the periods holding the day is settled), by id."""
        return self.query(
            f"SELECT * FROM ({UNNEEDED_STAGED}) AS unneeded ORDER BY id",
            {"dataset": dataset, "day_dataset": day_dataset},
        )

    @_reconnecting
    def forget_staged(self, ids: Sequence[int]) -> int:
        """These done day units' staged files are deleted: their paths are forgotten (the
        units stay done, their reads recorded). Returns how many."""
        count = 0
        with self._write() as cursor:
            for where, params in in_lists("id", ids, "i"):
                count += cursor.execute(
                    f"UPDATE units SET file_path = NULL WHERE state = 'done' AND {where}", params
                ).rowcount
        return count

    def days_to_read_again(self, dataset: str, day_dataset: str) -> list[int]:
        """The day units a pending unit of `dataset` needs whose staged file was deleted, or
        that failed."""
        rows = self.query(DAYS_TO_READ_AGAIN, {"dataset": dataset, "day_dataset": day_dataset})
        return [row.id for row in rows]

    def reset_ids(self, ids: Sequence[int], sources: set[UnitState]) -> int:
        """These units (by id, in `sources` states) back to pending, in slices (`in_lists`)."""
        count = 0
        for where, params in in_lists("id", ids, "i"):
            count += self.reset_units(where, params, sources)  # type: ignore[attr-defined]  # Resets
        return count

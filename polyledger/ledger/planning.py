"""Planning: units added to the ledger, and clipped units widened by a later plan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.records import PlannedUnit, iso
from polyledger.ledger.runs import CLAIM_SETTING, LEDGER_ID, new_ledger_id
from polyledger.ledger.states import UnitState
from polyledger.periods import period_bounds

DayRange = tuple[dt.date, dt.date]  # the first and last day asked, inclusive


class Planning(UnitMoves):
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
        identity = {"k": LEDGER_ID, "v": new_ledger_id()}

        def flush() -> int:
            with self._write() as cursor:
                # the ledger's id with its first units (a no-op once it has one): made at the
                # first run, it was missing from a backup taken after `plan`, and that backup,
                # restored, was refused its own data folder (the marker names the id)
                cursor.execute(CLAIM_SETTING, identity)
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

    def widen_clipped(self, dataset: str, asked: Mapping[str, Sequence[DayRange]]) -> tuple[int, int]:
        """Widen the clipped units of `dataset` that the days a plan asked of their ticker
        cover further (`asked`: ticker -> [(first, last), ...]; `_widen_clipped`)."""
        return self._widen_clipped(dataset, {ticker: tuple(ranges) for ticker, ranges in asked.items()})

    @_reconnecting
    def _widen_clipped(self, dataset: str, asked: dict[str, tuple[DayRange, ...]]) -> tuple[int, int]:
        """Units an earlier plan clipped (part of a month or year) that a plan asking a
        ticker for the days of `asked` covers further are widened, and, if settled, queued
        again so the period is fetched whole (its file is then replaced by a superset of
        itself). Returns (widened, busy): busy units are being fetched right now and left
        alone, the range asked of each recorded (`unwidened`): the run settles the range it
        was given, and the days asked beyond it are in no unit until a later plan widens it
        (`audit` reports them). A row a unit now covers is forgotten."""
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
                first, last = period_bounds(row["period"])
                new_start, new_end = row["period_start"], row["period_end"]
                for start, end in asked.get(row["ticker"], ()):
                    if start <= last and end >= first:
                        new_start = min(new_start, max(start, first).isoformat())
                        new_end = max(new_end, min(end, last).isoformat())
                if (new_start, new_end) == (row["period_start"], row["period_end"]):
                    continue
                if row["state"] == UnitState.RUNNING.value:
                    busy += 1
                    self._owe(cursor, row["id"], new_start, new_end)
                    continue
                params = {
                    "id": row["id"],
                    "start": new_start,
                    "end": new_end,
                    "old_start": row["period_start"],
                    "old_end": row["period_end"],
                }
                widen = "period_start = :start, period_end = :end"
                # each update only from the state and range read: on PostgreSQL nothing stops
                # a worker on another host claiming the unit since (it then fetches the range
                # it was given: a widened range would be settled `done` over days never
                # asked), nor another plan widening it (whose range this one would narrow)
                same = "id = :id AND period_start = :old_start AND period_end = :old_end"
                if row["state"] == UnitState.PENDING.value:
                    moved = cursor.execute(
                        f"UPDATE units SET {widen} WHERE {same} AND state = 'pending'", params
                    ).rowcount
                else:
                    # queued again with a fresh budget, as `retry` does: a unit that had used
                    # its attempts must not fail for good on its first transient error
                    moved = self._move(
                        cursor,
                        UnitState.PENDING,
                        {UnitState(row["state"])},
                        same,
                        params,
                        sets=f"{widen}, attempts = 0",
                    ).rowcount
                if not moved:  # claimed or widened since it was read: left to the next plan
                    busy += 1
                    self._owe(cursor, row["id"], new_start, new_end)
                    continue
                widened += 1
            cursor.execute(
                "DELETE FROM unwidened WHERE EXISTS (SELECT 1 FROM units u WHERE u.id = unwidened.unit_id "
                "AND u.period_start <= unwidened.first_day AND u.period_end >= unwidened.last_day)"
            )
        return widened, busy

    def _owe(self, cursor, unit_id: int, first: str, last: str) -> None:  # type: ignore[no-untyped-def]
        """Record the days a plan asked of a unit it could not widen (the widest asked)."""
        cursor.execute(
            "INSERT INTO unwidened (unit_id, first_day, last_day, planned_at) VALUES (:id, :f, :l, :now) "
            "ON CONFLICT (unit_id) DO UPDATE SET "
            "first_day = CASE WHEN excluded.first_day < unwidened.first_day "
            "THEN excluded.first_day ELSE unwidened.first_day END, "
            "last_day = CASE WHEN excluded.last_day > unwidened.last_day "
            "THEN excluded.last_day ELSE unwidened.last_day END, planned_at = excluded.planned_at",
            {"id": unit_id, "f": first, "l": last, "now": iso(self.clock())},
        )

"""Settled units put back in the queue (retry, repair, re-plan), each with a fresh attempt
budget; their history stays in `unit_attempts`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.queries import stale_adjusted_sql
from polyledger.ledger.records import in_list, iso
from polyledger.ledger.states import UnitState


class Resets(UnitMoves):
    @_reconnecting
    def reset_units(self, where: str, params: dict, sources: set[UnitState]) -> int:
        """Put matching settled/failed units back to pending (retry, repair, re-plan), with a
        fresh attempt budget; their history stays in unit_attempts."""
        with self._write() as cursor:
            return self._move(cursor, UnitState.PENDING, sources, where, params, sets="attempts = 0").rowcount

    def reset_failed(
        self, classes: Sequence[str], tickers: Sequence[str] = (), datasets: Sequence[str] = ()
    ) -> int:
        """Failed units of these error classes (`unknown`: failed with none) back to pending,
        of some tickers and datasets when given. Returns how many."""
        if not classes:
            return 0
        where, params = in_list("coalesce(error_class, 'unknown')", classes, "c")
        return self._reset_chosen(where, params, {UnitState.FAILED}, tickers, datasets)

    def reset_stale(self, tickers: Sequence[str] = ()) -> int:
        """Adjusted units a later split made stale (`queries.stale_adjusted_sql`) back to pending."""
        where = f"id IN (SELECT id FROM ({stale_adjusted_sql(self.dialect)}) AS stale)"
        return self._reset_chosen(where, {}, {UnitState.DONE}, tickers)

    def reset_flagged(
        self, checks: Sequence[str] = (), tickers: Sequence[str] = (), datasets: Sequence[str] = ()
    ) -> int:
        """Done units a quality check flagged (all checks, or those named) back to pending,
        of some tickers and datasets when given."""
        flagged, params = "SELECT unit_id FROM quality_flags WHERE unit_id IS NOT NULL", {}
        if checks:
            test, params = in_list("check_name", checks, "k")
            flagged += f" AND {test}"
        return self._reset_chosen(f"id IN ({flagged})", params, {UnitState.DONE}, tickers, datasets)

    def reset_relisted(self, tickers: Sequence[str], datasets: Sequence[str]) -> int:
        """Done bar units of symbols whose listings changed back to pending: fetched again,
        their bars get the new listings' security_id (and unattributed bars are recounted)."""
        if not tickers:
            return 0
        return self._reset_chosen("1 = 1", {}, {UnitState.DONE}, tickers, datasets)

    def reset_settled(self, dataset: str, tickers: Sequence[str]) -> int:
        """Done and empty units of `dataset` for these tickers back to pending (`sync`: a
        ticker's splits or dividends announced since its unit was fetched)."""
        if not tickers:
            return 0
        settled = {UnitState.DONE, UnitState.EMPTY_CONFIRMED}
        return self._reset_chosen("1 = 1", {}, settled, tickers, [dataset])

    def reset_read_before(self, dataset: str, day: dt.date, before: dt.datetime) -> int:
        """Done and empty units of `dataset` whose period holds `day`, fetched before `before`,
        back to pending (`sync`: each session read once more the night after)."""
        where = "period_start <= :day AND period_end >= :day AND fetched_at < :before"
        params = {"day": day.isoformat(), "before": iso(before)}
        settled = {UnitState.DONE, UnitState.EMPTY_CONFIRMED}
        return self._reset_chosen(where, params, settled, datasets=[dataset])

    def reset_done_units(self, unit_ids: Sequence[int]) -> int:
        """These done units (by id) back to pending: their files were found wanting."""
        if not unit_ids:
            return 0
        where, params = in_list("id", unit_ids, "u")
        return self.reset_units(where, params, {UnitState.DONE})

    def _reset_chosen(
        self,
        where: str,
        params: dict,
        sources: set[UnitState],
        tickers: Sequence[str] = (),
        datasets: Sequence[str] = (),
    ) -> int:
        """reset_units on `where`, narrowed to some tickers and datasets when given."""
        tests = [where]
        for column, values, prefix in (("ticker", tickers, "t"), ("dataset", datasets, "d")):
            if values:
                test, names = in_list(column, values, prefix)
                tests.append(test)
                params = {**params, **names}
        return self.reset_units(" AND ".join(tests), params, sources)

"""The ledger's own reads, as `Ledger` methods: units per dataset and state, the open work a
run waits on, the failed classes `retry` chooses from. (Reads for audits, reports and the
notebook are named functions in `polyledger.ledger.queries`.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.records import iso


class Reads(UnitMoves):
    def counts(self, window: tuple[dt.date, dt.date] | None = None) -> dict[str, dict[str, int]]:
        """{dataset: {state: units}} (of periods starting in `window` when given)"""
        result: dict[str, dict[str, int]] = {}
        test, params = self._scope_filter(None, window)
        where = f" WHERE {test.removeprefix(' AND ')}" if test else ""
        sql = f"SELECT dataset, state, count(*) AS n FROM units{where} GROUP BY dataset, state"
        for row in self.query(sql, params):
            result.setdefault(row.dataset, {})[row.state] = row.n
        return result

    def open_work(
        self,
        owner: str,
        datasets: Sequence[str] | None = None,
        window: tuple[dt.date, dt.date] | None = None,
    ) -> tuple[int, int]:
        """(pending units, units running under someone else's live lease), of `datasets` and
        of periods starting in `window` when given."""
        dataset_filter, params = self._scope_filter(datasets, window)
        params.update(owner=owner, now=iso(self.clock()))
        row = self.query(
            "SELECT "
            f"(SELECT count(*) FROM units WHERE state = 'pending'{dataset_filter}) AS pending, "
            "(SELECT count(*) FROM units WHERE state = 'running' AND lease_owner != :owner "
            f"AND lease_expires_at >= :now{dataset_filter}) AS others",
            params,
        )[0]
        return row.pending, row.others

    def failed_classes(self) -> dict[str, int]:
        rows = self.query(
            "SELECT coalesce(error_class, 'unknown') AS c, count(*) AS n FROM units "
            "WHERE state = 'failed' GROUP BY 1"
        )
        return {row.c: row.n for row in rows}

"""Tables replaced whole: a ticker's splits (fetched from the API) and the findings of a
quality check."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.queries import ADJUSTED_BARS, OPEN_UTC
from polyledger.ledger.records import iso
from polyledger.ledger.states import UnitState

# adjusted bar units fetched after a split's open, before its date: on its basis
_ON_SPLITS_BASIS = (
    f"dataset IN {ADJUSTED_BARS} AND ticker = :ticker AND adjusted AND period_start < :day "
    "AND fetched_at >= :open"
)


class SplitsAndFlags(UnitMoves):
    @_reconnecting
    def replace_splits(self, ticker: str, splits: Sequence[tuple[str, float, float]]) -> int:
        """The ticker's known splits, (execution_date, split_from, split_to), replaced whole.
        A split unchanged in date and ratio keeps when it was first recorded: units fetched
        before then may predate the API's knowing of it (`queries.stale_adjusted_sql`). A
        split found by the ticker's first look (its splits never fetched before: planned
        after its bars, say) says nothing of when the API learnt of it: recorded as of its
        own date, so only the units fetched before that date are stale by it.

        A split no longer listed (withdrawn, or its date or ratio corrected) after its open
        leaves the ticker's adjusted units fetched since then, before its date, on a basis
        the API no longer serves, and no split the stale check could judge them by: they
        are queued again (returns how many)."""
        now = iso(self.clock())
        with self._write() as cursor:
            held = cursor.execute(
                "SELECT execution_date, split_from, split_to, recorded_at FROM splits WHERE ticker = ?",
                (ticker,),
            ).fetchall()
            first = {
                (row["execution_date"], float(row["split_from"]), float(row["split_to"])): row["recorded_at"]
                for row in held
            }
            # the unit settles after this: a fetch time on it is an earlier look's
            looked_before = cursor.execute(
                "SELECT 1 FROM units WHERE dataset = 'splits' AND ticker = ? AND fetched_at IS NOT NULL",
                (ticker,),
            ).fetchone()
            cursor.execute("DELETE FROM splits WHERE ticker = ?", (ticker,))
            cursor.executemany(
                "INSERT INTO splits (ticker, execution_date, split_from, split_to, recorded_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ticker, execution_date) DO NOTHING",
                [
                    (
                        ticker,
                        day,
                        split_from,
                        split_to,
                        first.get((day, split_from, split_to), now if looked_before else day),
                    )
                    for day, split_from, split_to in splits
                ],
            )
            listed = {(day, float(split_from), float(split_to)) for day, split_from, split_to in splits}
            opened = [key for key in first if f"{key[0]}T{OPEN_UTC}" <= now]
            withdrawn = {day for day, *ratio in opened if (day, *ratio) not in listed}
            return sum(
                self._move(
                    cursor,
                    UnitState.PENDING,
                    {UnitState.DONE},
                    _ON_SPLITS_BASIS,
                    {"ticker": ticker, "day": day, "open": f"{day}T{OPEN_UTC}:00"},
                    sets="attempts = 0",
                ).rowcount
                for day in sorted(withdrawn)
            )

    def replace_quality_flags(self, datasets: Sequence[str], flags: Iterable[dict]) -> int:
        """The findings of a quality check of `datasets`, replacing that check's earlier
        ones. Each flag: dataset, ticker, session_date, check_name, detail, value, unit_id
        (the last three may be None). Returns how many were stored."""
        now = iso(self.clock())
        rows = [
            (
                now,
                flag["dataset"],
                flag["ticker"],
                flag.get("session_date"),
                flag["check_name"],
                flag["detail"],
                flag.get("value"),
                flag.get("unit_id"),
            )
            for flag in flags
        ]
        return self._store_quality_flags(list(datasets), rows)

    @_reconnecting
    def _store_quality_flags(self, datasets: list[str], rows: list[tuple]) -> int:
        with self._write() as cursor:
            cursor.executemany("DELETE FROM quality_flags WHERE dataset = ?", [(name,) for name in datasets])
            cursor.executemany(
                "INSERT INTO quality_flags (checked_at, dataset, ticker, session_date, check_name, detail, "
                "value, unit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

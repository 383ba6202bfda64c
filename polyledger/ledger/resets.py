"""Settled units put back in the queue (retry, repair, re-plan), each with a fresh attempt
budget; their history stays in `unit_attempts`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyledger.ledger.connection import _reconnecting
from polyledger.ledger.moves import UnitMoves
from polyledger.ledger.queries import stale_adjusted_query
from polyledger.ledger.records import SeenUnit, in_list, in_lists, iso
from polyledger.ledger.states import UnitState
from polyledger.listings import ListingChange


@dataclass(frozen=True)
class Reread:
    """Units queued again because they were read too soon after a session (`sync`)."""

    units: int
    sessions: tuple[dt.date, ...]  # every session one of them was read too soon after, in order


def _reread(rows: Sequence, deadlines: Mapping[dt.date, str]) -> Reread:
    """The units moved and the sessions they re-read: those of each unit's period it was
    fetched before the deadline of (ISO texts compare as times, as in the UPDATE)."""
    sessions = {
        day
        for row in rows
        for day, deadline in deadlines.items()
        if row["period_start"] <= day.isoformat() <= row["period_end"] and row["fetched_at"] < deadline
    }
    return Reread(len(rows), tuple(sorted(sessions)))


# a running unit taken from its worker when a plan changes its symbol's listings (the
# worker's file write and settle check the lease: LeaseLost, nothing replaced)
RELISTED = "relisted"
_RELISTED_TEXT = "taken back from its run: a plan changed the symbol's listings over its days"


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
        """Adjusted units a later split made stale (`queries.stale_adjusted_query`) back to pending."""
        stale, params = stale_adjusted_query(self)
        return self._reset_chosen(
            f"id IN (SELECT id FROM ({stale}) AS stale)", params, {UnitState.DONE}, tickers
        )

    def reset_flagged(
        self, checks: Sequence[str] = (), tickers: Sequence[str] = (), datasets: Sequence[str] = ()
    ) -> int:
        """Settled units a quality check flagged (all checks, or those named) back to
        pending, of the flags of some tickers and of some datasets when given: `done` ones,
        and `empty_confirmed` ones (`missing_session` flags a month that settled empty while
        daily bars say it traded: only a fetch again can cure it). A ticker is the flag's:
        a grouped day's flag names the symbol, its unit is the whole market's."""
        flagged, params = "SELECT unit_id FROM quality_flags WHERE unit_id IS NOT NULL", {}
        if checks:
            test, params = in_list("check_name", checks, "k")
            flagged += f" AND {test}"
        settled = {UnitState.DONE, UnitState.EMPTY_CONFIRMED}
        if not tickers:
            return self._reset_chosen(f"id IN ({flagged})", params, settled, (), datasets)
        # the flags' tickers, not their units': each slice of them inside the flags' query
        of_datasets, params = _datasets_test(params, datasets)
        return self._reset_ticker_slices(
            lambda test: f"id IN ({flagged} AND {test}){of_datasets}", params, settled, tickers
        )

    @_reconnecting
    def reset_relisted(self, changes: Sequence[ListingChange], datasets: Sequence[str]) -> int:
        """Settled bar units that new listings of their symbol make wrong back to pending, in
        one transaction (`_requeue_relisted`; a plan does it in the transaction that records
        the listings: `record_listings(..., requeue=...)`)."""
        with self._write() as cursor:
            return self._requeue_relisted(cursor, changes, datasets)

    def _requeue_relisted(
        self, cursor: Any, changes: Sequence[ListingChange], datasets: Sequence[str]
    ) -> int:
        """Done units holding a day whose security changed (fetched again, their bars get the
        new listings' security_id and unattributed bars are recounted), and empty units
        holding a day that lies inside a listing now and lay inside none before (their
        emptiness was taken from the old windows, never checked against the plan's history),
        back to pending on `cursor`'s transaction, and running units over either (their
        workers read the old windows). Units over days the change leaves alone keep their
        state."""
        dataset_test, dataset_params = in_list("dataset", datasets, "d")
        where = f"ticker = :t AND period_end >= :first AND period_start <= :last AND {dataset_test}"
        moved = 0
        for change in changes:
            for days, sources in (
                (change.changed, {UnitState.DONE}),
                (change.listed, {UnitState.EMPTY_CONFIRMED}),
            ):
                for first, last in days:
                    params = {
                        **dataset_params,
                        "t": change.ticker,
                        "first": (first or dt.date.min).isoformat(),
                        "last": (last or dt.date.max).isoformat(),
                    }
                    moved += self._move(
                        cursor, UnitState.PENDING, sources, where, params, "attempts = 0"
                    ).rowcount
                    moved += self._take_from_run(cursor, where, params)
        return moved

    def _take_from_run(self, cursor: Any, where: str, params: dict) -> int:
        """Running units where `where` holds back to pending, their attempts recorded: a
        unit a run holds was read against the old windows; taken from its worker (whose
        write and settle are fenced by the lease) it is fetched again, never settled with
        the old security_id or emptiness. The run goes on."""
        now = iso(self.clock())
        return len(
            self._take_back(cursor, where, params, now, _RELISTED_TEXT, error_class=RELISTED, runs_lost=False)
        )

    def reset_settled(self, dataset: str, tickers: Sequence[str]) -> int:
        """Done and empty units of `dataset` for these tickers back to pending (`sync`: a
        ticker's splits or dividends announced since its unit was fetched)."""
        if not tickers:
            return 0
        settled = {UnitState.DONE, UnitState.EMPTY_CONFIRMED}
        return self._reset_chosen("1 = 1", {}, settled, tickers, [dataset])

    @_reconnecting
    def reset_read_too_soon(self, dataset: str, deadlines: Mapping[dt.date, dt.datetime]) -> Reread:
        """Done and empty units of `dataset` holding a session of `deadlines` and fetched
        before its deadline (`sync`: the end of the session after it, so never read a full
        session after it) back to pending, in one UPDATE. Once read again, a unit's
        fetched_at is past every deadline given: it is not picked again."""
        if not deadlines:
            return Reread(0, ())
        days = sorted(deadlines)
        params: dict = {"_first": days[0].isoformat(), "_last": days[-1].isoformat()}
        params["_latest"] = iso(max(deadlines.values()))
        params["dataset"] = dataset
        tests = []
        for i, day in enumerate(days):
            params[f"s{i}"], params[f"e{i}"] = day.isoformat(), iso(deadlines[day])
            tests.append(f"(period_start <= :s{i} AND period_end >= :s{i} AND fetched_at < :e{i})")
        # the coarse bounds first: most units end before the window or were read since
        where = (
            "dataset = :dataset AND period_end >= :_first AND period_start <= :_last "
            f"AND fetched_at < :_latest AND ({' OR '.join(tests)})"
        )
        settled = {UnitState.DONE, UnitState.EMPTY_CONFIRMED}
        with self._write() as cursor:
            rows = self._move(
                cursor,
                UnitState.PENDING,
                settled,
                where,
                params,
                sets="attempts = 0",
                returning="period_start, period_end, fetched_at",
            ).fetchall()
        return _reread(rows, {day: iso(deadline) for day, deadline in deadlines.items()})

    def reset_done_units(self, unit_ids: Sequence[int]) -> int:
        """These done units (by id) back to pending: their files were found wanting."""
        if not unit_ids:
            return 0
        where, params = in_list("id", unit_ids, "u")
        return self.reset_units(where, params, {UnitState.DONE})

    # --- repair's holds: settled units taken only while still as a check found them ---------

    @_reconnecting
    def hold_unchanged(
        self, seen: Sequence[SeenUnit], owner: str, token: str, lease_seconds: float
    ) -> list[int]:
        """Take the units `seen` (by `audit --deep`'s check) that are still exactly as seen
        (state, attempts, file, checksum, last change) under a lease of `owner` (`token`,
        `lease_seconds`), in one transaction: each queued again (pending) and at once
        claimed, so no run can claim it or find it pending in between. Not an attempt
        (`attempts` stays as it was). Returns the ids taken, in order; a unit a run fetched,
        holds or queued again since the check is not taken. Given back by `release_held`;
        if the holder dies, its lease's expiry takes them back (`reclaim_expired`).
        Repeated after a dropped connection, it first looks for the units the lost answer
        took (as a claim does)."""
        if getattr(self._local, "retrying", False):
            landed = (
                self._statement()
                .execute(
                    "SELECT id FROM units WHERE lease_token = :token AND state = 'running' ORDER BY id",
                    {"token": token},
                )
                .fetchall()
            )
            if landed:
                return [row[0] for row in landed]
        taken: list[int] = []
        expires = iso(self.clock() + dt.timedelta(seconds=lease_seconds))
        unchanged = (
            "id = :id AND attempts = :attempts AND updated_at = :updated_at "
            "AND coalesce(file_path, '') = :file_path AND coalesce(checksum, '') = :checksum"
        )
        with self._write() as cursor:
            # in id order: transactions locking units always take them in one order
            for unit in sorted(seen, key=lambda unit: unit.id):
                params = {
                    "id": unit.id,
                    "attempts": unit.attempts,
                    "updated_at": unit.updated_at,
                    "file_path": unit.file_path or "",
                    "checksum": unit.checksum or "",
                }
                moved = self._move(
                    cursor, UnitState.PENDING, {UnitState(unit.state)}, unchanged, params, by_id=True
                ).rowcount
                if moved == 1:
                    taken.append(unit.id)
            if taken:
                where, params = in_list("id", taken, "u")
                self._move(
                    cursor,
                    UnitState.RUNNING,
                    {UnitState.PENDING},
                    where,
                    dict(params, owner=owner, token=token, expires=expires),
                    sets="lease_owner = :owner, lease_token = :token, lease_expires_at = :expires",
                    by_id=True,
                )
        return taken

    @_reconnecting
    def holds_unit(self, unit_id: int, token: str) -> bool:
        """Is this unit still held under `token` (`hold_unchanged`), its lease not run out?
        Asked right before its file moves."""
        rows = (
            self._statement()
            .execute(
                "SELECT id FROM units WHERE id = :id AND lease_token = :token "
                "AND state = 'running' AND lease_expires_at >= :now_iso",
                {"id": unit_id, "token": token, "now_iso": iso(self.clock())},
            )
            .fetchall()
        )
        return len(rows) == 1

    @_reconnecting
    def release_held(self, unit_ids: Sequence[int], token: str, target: UnitState) -> int:
        """Units held under `token` given back, only those it still holds: to `pending` with
        a fresh attempt budget (as `reset_units`: their files were found wanting), or back to
        `empty_confirmed` (their withdrawn files moved aside). Returns how many."""
        if not unit_ids:
            return 0
        if target not in (UnitState.PENDING, UnitState.EMPTY_CONFIRMED):
            raise ValueError(f"held units go back to pending or empty_confirmed, not {target.value}")
        where, params = in_list("id", unit_ids, "u")
        sets = "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
        if target is UnitState.PENDING:
            sets += ", attempts = 0"
        with self._write() as cursor:
            return self._move(
                cursor,
                target,
                {UnitState.RUNNING},
                f"{where} AND lease_token = :token",
                dict(params, token=token),
                sets=sets,
                by_id=True,
            ).rowcount

    def _reset_chosen(
        self,
        where: str,
        params: dict,
        sources: set[UnitState],
        tickers: Sequence[str] = (),
        datasets: Sequence[str] = (),
    ) -> int:
        """reset_units on `where`, narrowed to some tickers and datasets when given."""
        of_datasets, params = _datasets_test(params, datasets)
        where += of_datasets
        if not tickers:
            return self.reset_units(where, params, sources)
        return self._reset_ticker_slices(lambda test: f"{where} AND {test}", params, sources, tickers)

    @_reconnecting
    def _reset_ticker_slices(
        self, chosen: Callable[[str], str], params: dict, sources: set[UnitState], tickers: Sequence[str]
    ) -> int:
        """reset_units on `chosen(test)` for each slice of `tickers` (`in_lists`: a universe's
        in one IN list was past the database's bound variables), in one transaction: a
        retry queues all of them or none. A unit moved by one slice is pending, no source
        of another's: each is counted once."""
        with self._write() as cursor:
            return sum(
                self._move(
                    cursor, UnitState.PENDING, sources, chosen(test), {**params, **names}, sets="attempts = 0"
                ).rowcount
                for test, names in in_lists("ticker", tickers, "t")
            )


def _datasets_test(params: dict, datasets: Sequence[str]) -> tuple[str, dict]:
    """` AND dataset IN (...)` when `datasets` are given (a few names: one IN list), and
    `params` with theirs."""
    if not datasets:
        return "", params
    test, names = in_list("dataset", datasets, "d")
    return f" AND {test}", {**params, **names}

"""Putting failed units back in the queue, chosen by error class, ticker and dataset."""

from __future__ import annotations

from collections.abc import Sequence

from polyledger.audit import STALE_ADJUSTED
from polyledger.errors import InputError, is_known_class, is_transient_class
from polyledger.ledger import Ledger, UnitState, in_list
from polyledger.periods import check_dataset

GROUPS = ("transient", "all")


def retry_failed(
    ledger: Ledger,
    error_class: str = "transient",
    tickers: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> int:
    """Move failed units back to pending. `error_class` is `transient` (every class a retry
    may cure), `all`, or one class name as stored in the ledger (e.g. `not_entitled`)."""
    for name in datasets:
        check_dataset(name)
    present = ledger.failed_classes()
    if error_class == "all":
        classes = list(present)
    elif error_class == "transient":
        classes = [name for name in present if is_transient_class(name)]
    elif error_class in present:
        classes = [error_class]
    elif is_known_class(error_class):
        classes = []  # a real class with nothing failed of it (e.g. after an upgrade): nothing to do
    else:
        known = ", ".join(sorted(present)) or "none"
        raise InputError(f"unknown error class {error_class!r} (failed classes now: {known})")
    if not classes:
        return 0
    where, params = in_list("coalesce(error_class, 'unknown')", classes, "c")
    return _requeue(ledger, where, params, {UnitState.FAILED}, tickers, datasets)


def retry_stale(ledger: Ledger, tickers: Sequence[str] = ()) -> int:
    """Queue again the adjusted bar units that a later split made stale (see audit); their
    files are replaced when fetched. Returns how many were queued."""
    where = f"id IN (SELECT id FROM ({STALE_ADJUSTED}) AS stale)"
    return _requeue(ledger, where, {}, {UnitState.DONE}, tickers)


def retry_flagged(ledger: Ledger, checks: Sequence[str] = (), tickers: Sequence[str] = ()) -> int:
    """Queue again the done units that `audit --quality` flagged (all checks, or those
    named), to be downloaded afresh; the next quality check tells whether that helped."""
    flagged, params = "SELECT unit_id FROM quality_flags WHERE unit_id IS NOT NULL", {}
    if checks:
        test, params = in_list("check_name", checks, "k")
        flagged += f" AND {test}"
    return _requeue(ledger, f"id IN ({flagged})", params, {UnitState.DONE}, tickers)


def _requeue(
    ledger: Ledger,
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
    return ledger.reset_units(" AND ".join(tests), params, sources)

"""Putting failed units back in the queue, chosen by error class, ticker and dataset."""

from __future__ import annotations

from collections.abc import Sequence

from polyledger.checks.quality import CHECKS
from polyledger.datasets import check_dataset
from polyledger.errors import InputError, is_known_class, is_transient_class, some_of
from polyledger.ledger import Ledger, queries

GROUPS = ("transient", "all")


def retry_failed(
    ledger: Ledger,
    error_class: str = "transient",
    tickers: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> int:
    """Move failed units back to pending. `error_class` is `transient` (every class a retry
    may cure), `all`, `http_5xx` (every server error: stored as `http_500`, `http_503`, ...),
    or one class name as stored in the ledger (e.g. `not_entitled`)."""
    for name in datasets:
        check_dataset(name)
    check_tickers(ledger, tickers, datasets)
    present = ledger.failed_classes()
    if error_class == "all":
        classes = list(present)
    elif error_class == "transient":
        classes = [name for name in present if is_transient_class(name)]
    elif error_class == "http_5xx":  # the family docs/ledger.md names: every 5xx stored
        classes = [name for name in present if is_transient_class(name) and name.startswith("http_5")]
    elif error_class in present:
        classes = [error_class]
    elif is_known_class(error_class):
        classes = []  # a real class with nothing failed of it (e.g. after an upgrade): nothing to do
    else:
        known = ", ".join(sorted(present)) or "none"
        raise InputError(f"unknown error class {error_class!r} (failed classes now: {known})")
    return ledger.reset_failed(classes, tickers, datasets)


def retry_stale(ledger: Ledger, tickers: Sequence[str] = ()) -> int:
    """Queue again the adjusted bar units that a later split made stale, and the units built
    from day files replaced since (see audit); their files are replaced when fetched.
    Returns how many were queued."""
    from polyledger.datasets.flat_days import ROUTES

    check_tickers(ledger, tickers)
    # and the units built from flat files replaced since, with those day files
    return ledger.reset_stale(tickers) + ledger.reset_stale_flat(ROUTES, tickers)


def retry_flagged(
    ledger: Ledger,
    checks: Sequence[str] = (),
    tickers: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> int:
    """Queue again the settled units (done or empty_confirmed) that `audit --quality`
    flagged (all checks, or those named), of some tickers and datasets when given, to be
    downloaded afresh; the next quality check tells whether that helped."""
    for name in datasets:
        check_dataset(name)
    check_tickers(ledger, tickers, datasets, flagged=True)
    for name in checks:
        if name not in CHECKS:  # a typo would otherwise match no flag and say "0 ... pending again"
            raise InputError(f"unknown quality check {name!r} (checks: {', '.join(CHECKS)})")
    return ledger.reset_flagged(checks, tickers, datasets)


def check_tickers(
    ledger: Ledger, tickers: Sequence[str], datasets: Sequence[str] = (), *, flagged: bool = False
) -> None:
    """An InputError naming the tickers the ledger has no units of (of `datasets` when
    given; with `flagged`, nor quality flags: a grouped day's flag names the symbol): a
    misspelt or wrongly cased symbol would match nothing and say "0 ... pending again" of
    a ticker whose units stay failed."""
    if not tickers:
        return
    known: set[str] = set()
    for dataset in datasets or [None]:
        known |= queries.tickers_with_units(ledger, dataset, tickers)
        if flagged:
            known |= queries.flagged_tickers(ledger, dataset, tickers)
    unknown = [t for t in dict.fromkeys(tickers) if t not in known]
    if not unknown:
        return
    cased = set().union(
        *(queries.tickers_with_units(ledger, d, unknown, ignore_case=True) for d in datasets or [None])
    )
    hint = f"; did you mean {some_of(sorted(cased))}?" if cased else ""
    of = f" {'/'.join(datasets)}" if datasets else ""
    raise InputError(f"the ledger has no{of} units of {some_of(unknown)} (tickers are case-sensitive{hint})")

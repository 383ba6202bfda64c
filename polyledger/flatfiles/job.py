"""What the workers of one flat-file run share: the bucket and the universe per period."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterable

from polyledger.flatfiles.source import FlatFilesConfig, FlatFilesSource
from polyledger.ledger import Ledger, PlannedUnit


def period_of(dataset: str, day: dt.date) -> str:
    """The period of `dataset`'s unit that holds `day` (a month, or the year for `day`)."""
    return PlannedUnit(dataset, "-", day, day).period


def universe_hash(tickers: Iterable[str]) -> str:
    """What a day was staged for, compared by `prepare` with today's universe."""
    return hashlib.sha256("\n".join(sorted(tickers)).encode()).hexdigest()[:32]


class FlatJob:
    def __init__(self, config: FlatFilesConfig) -> None:
        self.config = config
        self.source = FlatFilesSource(config)
        self._tickers: dict[str, dict[str, frozenset[str]]] = {}
        self._hashes: dict[tuple[str, str], str] = {}
        self._as_of = -1  # the ledger's last unit id when the tickers were read
        self._lock = threading.Lock()

    def tickers(self, ledger: Ledger, dataset: str, period: str) -> frozenset[str]:
        """The tickers with a `dataset` unit in `period` as the ledger has them now: read in
        one query, and again once a unit was planned since (`plan` from another terminal or
        host during the run: a day staged without its ticker would build it empty)."""
        return self._period(ledger, dataset, period)[0]

    def universe(self, ledger: Ledger, dataset: str, period: str) -> str:
        """`universe_hash` of `tickers(...)`: what the period's days must have been staged for."""
        return self._period(ledger, dataset, period)[1]

    def _period(self, ledger: Ledger, dataset: str, period: str) -> tuple[frozenset[str], str]:
        latest = ledger.last_unit_id()
        with self._lock:  # the tickers and their hash from one read
            if latest != self._as_of:
                self._tickers.clear()
                self._hashes.clear()
                self._as_of = latest
            if dataset not in self._tickers:
                self._tickers[dataset] = ledger.tickers_by_period(dataset)
            tickers = self._tickers[dataset].get(period, frozenset())
            key = (dataset, period)
            if key not in self._hashes:
                self._hashes[key] = universe_hash(tickers)
            return tickers, self._hashes[key]

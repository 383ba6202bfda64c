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
        self._lock = threading.Lock()

    def tickers(self, ledger: Ledger, dataset: str, period: str) -> frozenset[str]:
        """The tickers with a `dataset` unit in `period` (read once per run: one query)."""
        with self._lock:
            if dataset not in self._tickers:
                self._tickers[dataset] = ledger.tickers_by_period(dataset)
            return self._tickers[dataset].get(period, frozenset())
